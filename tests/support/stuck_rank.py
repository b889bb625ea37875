"""A callback that makes one DDP rank stop answering, to test the collective timeout.

Used from the command line: ``+callbacks.stuck._target_=tests.support.stuck_rank.StuckRank`` with this folder
on ``PYTHONPATH``.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class StuckRank(pl.Callback):
    """Rank ``rank`` sleeps ``seconds`` after training batch ``at_batch`` (the other ranks wait in a collective)."""

    def __init__(self, rank: int = 1, at_batch: int = 1, seconds: float = 600.0) -> None:
        self.rank = rank
        self.at_batch = at_batch
        self.seconds = seconds

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_rank == self.rank and batch_idx == self.at_batch and self.seconds > 0:
            time.sleep(self.seconds)
