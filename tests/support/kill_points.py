"""A callback that holds a training run at a chosen point so a test can ``kill -9`` it there.

Points (``kind``): ``step`` (inside training step ``batch`` of ``epoch``, after the backward pass and
before the optimizer step), ``validation`` (before validation batch ``batch`` of ``epoch``, not the
sanity check), ``checkpoint`` (inside the first checkpoint write of the end of ``epoch``: the
temporary file created and not complete, the target not yet replaced), ``none`` (never holds).

At the point, the run writes ``<run dir>/kill_here`` (``"<pid> <kind> <epoch> <batch>"``) and sleeps
``seconds``: the test sees the file and sends SIGKILL from outside.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

KILL_FILE = "kill_here"
KINDS = ("none", "step", "validation", "checkpoint")


def _hold(run_dir: str, kind: str, epoch: int, batch: int, seconds: float) -> None:
    marker = Path(run_dir, KILL_FILE)
    marker.with_suffix(".part").write_text(f"{os.getpid()} {kind} {epoch} {batch}")
    marker.with_suffix(".part").replace(marker)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


class _HoldWhilePickled:
    """Placed into a checkpoint dict: ``torch.save`` pickles it while writing the temporary file."""

    def __init__(self, run_dir: str, epoch: int, seconds: float) -> None:
        self.run_dir, self.epoch, self.seconds = run_dir, epoch, seconds

    def __reduce__(self) -> tuple[Any, ...]:
        _hold(self.run_dir, "checkpoint", self.epoch, -1, self.seconds)
        return (dict, ())


class KillAt(pl.Callback):
    """Hold the run once at ``kind`` / ``epoch`` / ``batch`` (see the module docstring)."""

    def __init__(self, kind: str = "none", epoch: int = 0, batch: int = 0, seconds: float = 120.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.epoch, self.batch, self.seconds = kind, int(epoch), int(batch), float(seconds)
        self.fired = False

    def _due(self, trainer: pl.Trainer, kind: str, batch: int) -> bool:
        due = not self.fired and self.kind == kind and trainer.current_epoch == self.epoch and batch == self.batch
        self.fired = self.fired or due
        return due

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self._due(trainer, "step", trainer.fit_loop.epoch_loop.batch_idx):
            _hold(trainer.default_root_dir, "step", self.epoch, self.batch, self.seconds)

    @override
    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking and self._due(trainer, "validation", batch_idx):
            _hold(trainer.default_root_dir, "validation", self.epoch, self.batch, self.seconds)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._due(trainer, "checkpoint", self.batch):
            checkpoint["kill_point"] = _HoldWhilePickled(trainer.default_root_dir, self.epoch, self.seconds)
