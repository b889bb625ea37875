"""One run at a time in a run directory: an exclusive lock on ``<run dir>/.lock``.

Two ``python run.py ... hydra.run.dir=<same>`` at once would interleave their ``metrics.csv`` rows,
mix their checkpoints and overwrite each other's records. The lock (``fcntl.flock`` on
``<run dir>/.lock``, which holds the holder's pid and host) is taken before Hydra writes anything in
the directory (:class:`RunDirLock` is a Hydra callback, ``conf/hydra/default.yaml``), so a second run
there exits with status 1 and one line naming the directory and the holder. The operating system
releases a ``flock`` when its process dies, even with ``kill -9``: a lock file left with content but
no holder is stale, and the next run takes it over with a warning.

Under DDP only rank 0 (the launching process) locks: the ranks Lightning re-launches run the same
command in the same directory. Each job of a multirun has its own directory and is not locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.artifacts import LOCK_FILE

__all__ = ["RunDirLock", "RunDirLocked", "acquire", "release"]

log = logging.getLogger(__name__)

#: run directory -> the open lock file this process holds
_HELD: dict[Path, int] = {}


class RunDirLocked(RuntimeError):
    """Another process holds the run directory's lock."""


def _holder(text: str) -> str:
    pid, _, host = text.strip().partition(" ")
    return f"pid {pid} on {host}" if pid else "another process"


def acquire(run_dir: str | Path) -> str | None:
    """Lock ``run_dir`` for this process (creating it); re-locking a directory it holds is a no-op.

    Returns:
        ``"pid N on host"`` of a stale lock taken over (its holder no longer runs), else None.

    Raises:
        RunDirLocked: another running process holds the lock.
    """
    run_dir = Path(run_dir).resolve()
    if run_dir in _HELD:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 256, 0).decode(errors="replace")
            os.close(fd)
            raise RunDirLocked(
                f"{run_dir} is in use by another run ({_holder(text)}); wait for it, or choose another "
                "hydra.run.dir") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the holder removed it between our open and our lock: try again
            same = False
        if same:
            break
        os.close(fd)
    previous = os.pread(fd, 256, 0).decode(errors="replace").strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _HELD[run_dir] = fd
    return _holder(previous) if previous else None


def release(run_dir: str | Path) -> None:
    """Remove and unlock ``run_dir``'s lock if this process holds it."""
    run_dir = Path(run_dir).resolve()
    fd = _HELD.pop(run_dir, None)
    if fd is None:
        return
    try:
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(fd)


def _release_all() -> None:
    for run_dir in list(_HELD):
        release(run_dir)


def _is_launched_rank() -> bool:
    """A rank that Lightning (or torchrun, or SLURM) started beside rank 0."""
    from runner.launch.ddp import global_rank

    return global_rank() != 0


class RunDirLock(Callback):
    """Hydra callback: locks a single run's directory before Hydra writes in it (see the module)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_launched_rank():
            return
        run_dir = Path(str(config.hydra.run.dir))
        try:
            stale = acquire(run_dir)
        except RunDirLocked as err:
            print(f"Error: {err}", file=sys.stderr)
            sys.exit(1)
        if stale:
            print(f"Warning: took over the lock of {run_dir} from {stale}, which is no longer running",
                  file=sys.stderr)
        import atexit

        atexit.register(_release_all)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(str(config.hydra.run.dir)))
