"""Checkpoint writing without Lightning's in-memory copies: ``torch.save`` straight to the file.

Lightning's ``TorchCheckpointIO`` serialises every checkpoint into a ``BytesIO`` buffer, copies the
buffer out (``getvalue()``) and writes it through an fsspec transaction: two extra copies of the
whole checkpoint (twice per improving epoch), more time than a plain ``torch.save`` and twice its
memory. :class:`LocalAtomicCheckpointIO`
writes local paths with ``torch.save`` into a temporary file next to the target and renames it
over the target (``os.replace``), so a checkpoint is still never seen half-written; remote paths
(``s3://``, ``gs://``, ...) keep Lightning's path. A write that fails removes its temporary file; on a
full disk it raises :class:`runner.disk_space.DiskFull` (one line: the file and the space left; the
earlier checkpoints are untouched). A temporary file of a writer killed mid-write
(``.<name>.<pid>.tmp``) is removed by the next run in the directory (:mod:`runner.run_wrapper`).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from runner.disk_space import disk_full_error, free_bytes

__all__ = ["LocalAtomicCheckpointIO"]


class LocalAtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that saves local checkpoints with ``torch.save`` to a temporary file
    in the target's folder, then ``os.replace`` onto the target (atomic on one filesystem).

    Loading, removing and remote paths are Lightning's own. Use it as a Trainer plugin
    (``conf/trainer/default.yaml``: ``plugins``).
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # same folder: the rename is atomic
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, target)
        except BaseException as exc:
            free = free_bytes(target.parent)  # before the partial file is removed: ~0 on a full disk
            _close_writer(exc)
            tmp.unlink(missing_ok=True)
            full = disk_full_error(target, exc, free) if isinstance(exc, Exception) else None
            if full is not None:
                raise full from exc
            raise


def _close_writer(exc: BaseException) -> None:
    """Drop what the failed ``torch.save`` left in its frames: its zip writer keeps the file open (and a
    removed file's space taken) for as long as the traceback holds it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _is_local(path: _PATH) -> bool:
    fs = get_filesystem(str(path))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")
