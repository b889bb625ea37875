"""A full disk in one line: which file could not be written, and how much space is left.

``torch.save`` on a full disk raises a chained ``RuntimeError`` ("[enforce fail at
inline_container.cc:...] . unexpected pos", "PytorchStreamWriter failed writing file ...") with no
``errno``; Python's own writes raise ``OSError(ENOSPC)``. :func:`disk_full_error` turns either into one
:class:`DiskFull` (an ``OSError`` with ``errno.ENOSPC``) naming the file and the space left, and
:func:`disk_full_message` finds it (or a plain ENOSPC) in any exception's chain.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

__all__ = ["DiskFull", "disk_full_error", "disk_full_message", "free_bytes", "looks_like_disk_full"]

#: what ``torch.save`` says when a write comes up short
_TORCH_WRITE_FAILURES = ("unexpected pos", "failed writing file", "file write failed")


class DiskFull(OSError):
    """No space left on the device while writing ``filename`` (its message is the one line users see)."""

    def __init__(self, path: str | Path, free: int) -> None:
        super().__init__(errno.ENOSPC, f"No space left on device writing {path} ({_size(free)} free); "
                                       "earlier checkpoints are intact")
        self.filename = str(path)
        self.free = free

    def __str__(self) -> str:
        return str(self.strerror)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def free_bytes(path: str | Path) -> int:
    """Free space (for this user) on the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def looks_like_disk_full(exc: BaseException, free: int, needed: int = 1 << 20) -> bool:
    """Whether a failed write was a full disk: ENOSPC in the chain, or ``torch.save`` coming up short
    while less than ``needed`` bytes are free."""
    for err in _chain(exc):
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_WRITE_FAILURES) and free < needed:
            return True
    return False


def disk_full_error(path: str | Path, exc: BaseException, free: int) -> DiskFull | None:
    """A :class:`DiskFull` for a write of ``path`` that raised ``exc`` with ``free`` bytes free at the time,
    None when it was not a full disk."""
    return DiskFull(path, free_bytes(path)) if looks_like_disk_full(exc, free) else None


def disk_full_message(exc: BaseException) -> str | None:
    """The one line for a full disk anywhere in ``exc``'s chain, None when it is something else."""
    for err in _chain(exc):
        if isinstance(err, DiskFull):
            return str(err)
    for err in _chain(exc):
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            where = err.filename or "a file"
            return str(DiskFull(where, free_bytes(where) if err.filename else 0))
    return None
