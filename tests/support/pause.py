"""A callback that holds a training run at a known point, so a test can signal the SLURM job there."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning.pytorch as pl
from typing_extensions import override

PAUSED_FILE = "paused"


class PauseOnce(pl.Callback):
    """After training batch ``at_batch`` of epoch ``epoch``, write ``<run dir>/paused`` (holding the SLURM
    job id) and sleep ``seconds``; only in the job's first run (``SLURM_RESTART_COUNT`` unset or 0), so a
    requeued run goes straight through."""

    def __init__(self, epoch: int = 1, at_batch: int = 1, seconds: float = 300.0) -> None:
        self.epoch, self.at_batch, self.seconds = epoch, at_batch, seconds

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.current_epoch != self.epoch or batch_idx != self.at_batch:
            return
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
            return
        job = os.environ.get("SLURM_ARRAY_JOB_ID", "") + "_" + os.environ.get("SLURM_ARRAY_TASK_ID", "")
        job = job if job != "_" else os.environ.get("SLURM_JOB_ID", "")
        Path(trainer.default_root_dir, PAUSED_FILE).write_text(f"{job} {trainer.global_step} {time.time()}")
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:  # the signal's handler runs between two of these sleeps
            time.sleep(0.1)
