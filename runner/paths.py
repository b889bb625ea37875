"""Paths outside the run directory's contract: a path from a config, and Hydra's log files of a directory.

The names inside a run directory live in :mod:`runner.artifacts`; this module resolves the paths a
user writes in a config (relative to the directory they launched from, whatever Hydra's cwd) and
closes the log files Hydra opened in a run directory before it is removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["close_log_files", "resolve_user_path"]


def resolve_user_path(path: str | Path) -> Path:
    """A config path, relative to the directory the user launched from (Hydra may chdir)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import to_absolute_path

        if HydraConfig.initialized():
            return Path(to_absolute_path(str(p)))
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return p.resolve()


def close_log_files(output_dir: Path) -> None:
    """Close the file handlers Hydra opened in ``output_dir`` before the directory is removed."""
    for handler in list(logging.getLogger().handlers):
        filename = getattr(handler, "baseFilename", "")
        if filename and Path(filename).parent == output_dir:
            handler.close()
            logging.getLogger().removeHandler(handler)
