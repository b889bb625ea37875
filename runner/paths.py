"""Paths given by the user and files of a run directory, shared by the pipelines."""

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
