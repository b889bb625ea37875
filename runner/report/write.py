"""Writing ``report.html`` into a run, sweep or ``explain.py`` directory: which page, provenance, the file."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from runner.artifacts import (
    CHECKPOINTS_DIR,
    CSV_DIR,
    HYDRA_DIR,
    IMAGES_DIR,
    JOB_RESULT_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MULTIRUN_FILE,
    REPORT_FILE,
    TENSORBOARD_DIR,
    is_explain_dir,
    is_run_dir,
    is_sweep_dir,
)
from runner.report.explain_page import build_explain_report
from runner.report.provenance import record_provenance
from runner.report.run_page import build_run_report
from runner.report.sweep_page import build_sweep_report

__all__ = ["write_report", "write_report_safely"]

log = logging.getLogger(__name__)


def write_report(path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``report.html`` into a run, sweep or ``explain.py`` output directory; return its path.

    Args:
        path: the directory.
        provenance: given by the run itself at its end (e.g. ``{"command": ...}``, or ``{}``): the git
            commit, library versions and these are recorded now in ``provenance.json``. None (a report
            written later): the recorded ones are shown, or recorded now when there are none.

    Raises:
        FileNotFoundError: ``path`` is not such a directory (the message names it).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: no such directory (give a run directory, e.g. outputs/train/runs/<run>)")
    if is_explain_dir(directory):
        html = build_explain_report(directory)
    elif is_sweep_dir(directory):
        html = build_sweep_report(directory)
    elif is_run_dir(directory):
        html = build_run_report(directory, provenance=record_provenance(directory, provenance))
    else:
        looked_for = (f"{HYDRA_DIR}/", JOB_RESULT_FILE, METRICS_FILE, f"{CSV_DIR}/", f"{IMAGES_DIR}/",
                      f"{TENSORBOARD_DIR}/", f"{CHECKPOINTS_DIR}/", MULTIRUN_FILE)
        raise FileNotFoundError(f"{path}: not a run directory (none of {', '.join(looked_for)} or {MANIFEST_FILE} in it)")
    out = directory / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def write_report_safely(path: str | Path, provenance: dict[str, Any] | None = None) -> Path | None:
    """:func:`write_report`, but a failure only warns (a trained run must never fail because of its report)."""
    started = time.perf_counter()
    try:
        out = write_report(path, provenance=provenance)
    except Exception as err:  # noqa: BLE001 - the report is a by-product; say why and go on
        log.warning(f"Could not write the run report of {path}: {type(err).__name__}: {err}")
        return None
    log.info(f"Report written to {out} ({time.perf_counter() - started:.2f} s)")
    return out
