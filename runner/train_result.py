"""What :func:`runner.train.train` hands back: how far it got (:class:`FitProgress`) and what it measured (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FitProgress", "TrainResult"]


@dataclass
class FitProgress:
    """How far a run got, filled in by :func:`runner.train.train` as it goes.

    The caller creates it and passes it in, so that when ``train`` raises it can still tell a
    failure before training (nothing worth keeping) from one after (checkpoints and logs to keep).

    Attributes:
        trainer: the Trainer, once it is built.
        fit_started: ``trainer.fit`` was called.
        start_step: the global step training started from (after a resume), set at ``on_train_start``.
        resumed_from: the checkpoint ``fit`` resumes from, None for a fresh start.
    """

    trainer: Any = None
    fit_started: bool = False
    start_step: int | None = None
    resumed_from: str | None = None

    @property
    def step(self) -> int | None:
        """The global step the run reached (None before training started: before the checkpoint is restored)."""
        return None if self.trainer is None or self.start_step is None else int(self.trainer.global_step)

    @property
    def trained(self) -> bool:
        """Whether this run applied at least one optimizer step (a failure before is a failure "before training")."""
        if self.trainer is None or not self.fit_started:
            return False
        start = self.start_step if self.start_step is not None else 0
        return int(self.trainer.global_step) > start

    @property
    def world_size(self) -> int:
        """The number of DDP processes of the run (1 before the Trainer exists)."""
        return int(getattr(self.trainer, "world_size", 1) or 1)


@dataclass
class TrainResult:
    """A run that went through ``fit`` and ``test`` without raising.

    Attributes:
        metrics: every metric the Trainer holds at the end (``trainer.callback_metrics``), as floats.
        best_model_path: the best checkpoint of the ModelCheckpoint callback, ``""`` without one.
        stopped_by: ``"<Callback>: <reason>"`` when a callback declared the run failed (``run_failed``,
            e.g. ``TerminateOnNaN``); None otherwise.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    best_model_path: str = ""
    stopped_by: str | None = None

    @property
    def failed(self) -> bool:
        """Whether a callback stopped the run as failed."""
        return self.stopped_by is not None
