"""A run's ``provenance.json``: recorded once by the run itself, shown by every later report.

Recording is its own step (:func:`record_provenance`), called by :func:`runner.report.write_report`
before the page is built; the page builders only read.
"""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any

from runner.artifacts import Provenance
from runner.provenance import git, git_commit, library_versions

__all__ = ["PACKAGES", "current_provenance", "record_provenance", "shown_provenance"]

log = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "lightning", "timm", "hydra-core", "omegaconf", "torchmetrics", "numpy",
            "vision-runner")


def current_provenance() -> dict[str, Any]:
    """Git commit (and whether the tree had changes), library versions, Python, host, now."""
    commit = git_commit()
    dirty = git(["status", "--porcelain", "--untracked-files=no"]) if commit else None
    return Provenance(
        git_commit=commit,
        git_dirty=bool(dirty) if dirty is not None else None,
        versions=library_versions(PACKAGES),
        platform=platform.platform(),
        host=platform.node(),
        recorded_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    ).to_dict()


def record_provenance(run_dir: Path, extra: dict[str, Any] | None) -> dict[str, Any]:
    """Record ``provenance.json`` of the run when due, and return the provenance its report shows.

    Recorded now (from this process) when ``extra`` is given (the run itself is writing its report, a
    resumed run included) or when there is none yet; otherwise the one recorded earlier is returned.
    A directory that cannot be written to only loses the file, not the report.

    Args:
        run_dir: the run directory.
        extra: what the run adds (e.g. ``{"command": ...}``, or ``{}``); None for a report written later.
    """
    saved = Provenance.read(run_dir) if extra is None else None
    if saved is not None:
        return saved.to_dict()
    provenance = Provenance.from_dict({**current_provenance(), **(extra or {})})
    try:
        provenance.write(run_dir)
    except OSError as err:
        log.debug(f"provenance.json not written in {run_dir}: {err}")
    return provenance.to_dict()


def shown_provenance(run_dir: Path) -> dict[str, Any]:
    """The provenance a report shows without recording anything: the saved one, else this process's."""
    saved = Provenance.read(run_dir)
    return saved.to_dict() if saved is not None else current_provenance()
