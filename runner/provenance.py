"""Where a run's results came from: the git commit of this checkout and the library versions.

Shared by the run report (``runner.report``) and ``explain.py``'s ``manifest.json``.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def git(args: list[str]) -> str | None:
    """Output of ``git <args>`` in this project's checkout, or None (no git, not a checkout, an error)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str | None:
    """The checkout's HEAD commit, or None."""
    return git(["rev-parse", "HEAD"]) or None


def library_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Python's version and each installed distribution's (None when it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
