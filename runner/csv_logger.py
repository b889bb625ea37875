"""A CSVLogger that appends to an existing ``metrics.csv`` instead of deleting it.

Lightning's ``CSVLogger`` with a fixed ``version`` deletes ``metrics.csv`` when its folder is not
empty, so resuming a run in place (``ckpt_path=last hydra.run.dir=<run>``) would lose the earlier
epochs. This one keeps them: the existing rows stay, new rows are appended, and a new column
rewrites the header over all rows (as Lightning does within one run). Rows are written out as they
are logged and whenever a checkpoint is saved, so a run killed later loses none (a resume drops
those logged after its checkpoint: :func:`runner.launch.requeue.drop_rows_after_checkpoint`).
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from typing_extensions import override

__all__ = ["AppendingCSVLogger"]


class _AppendingExperimentWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` and its columns; new rows are appended."""

    @override
    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = sorted(set(header))


class AppendingCSVLogger(CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` that appends to ``<save_dir>/<name>/<version>/metrics.csv``.

    Same arguments as Lightning's CSVLogger. Earlier rows (e.g. from before a resume) are kept. Rows
    are written out as they are logged (``flush_logs_every_n_steps=1``, Lightning's default is 100), so a
    run killed with ``kill -9`` loses none: a resume drops those logged after its checkpoint.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(*args, **kwargs)

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    @override
    def after_save_checkpoint(self, checkpoint_callback: Checkpoint) -> None:
        """Write out the rows logged so far: the file then holds everything up to the checkpoint."""
        super().after_save_checkpoint(checkpoint_callback)
        self.save()
