"""TerminateOnNaN: stop a run cleanly once the training loss (or a chosen metric) is NaN or inf."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

__all__ = ["TerminateOnNaN", "is_finite"]

log = logging.getLogger(__name__)

_CHECK_ON = ("train_batch_end", "validation_end")


def is_finite(value: Any) -> bool:
    """Whether a loss/metric value (tensor, number or None) is finite; None counts as finite.

    A tensor is finite when every element is.
    """
    if value is None:
        return True
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    return math.isfinite(float(value))


class TerminateOnNaN(Callback):
    """Stop training cleanly as soon as the training loss (or ``monitor``) is NaN or infinite.

    The check runs on every rank and the decision is agreed across DDP ranks with
    ``trainer.strategy.reduce_boolean_decision(..., all=False)`` (one bad rank stops all), so no
    rank is left waiting in a collective. When it fires it sets ``trainer.should_stop = True`` and
    ``self.run_failed = True`` and records ``self.reason``; it never raises nor calls
    ``sys.exit``. The runner reads ``run_failed`` after ``fit``: the job's ``optimized_metric`` is
    reported as NaN (a failed trial for the Optuna sweeper) and testing is skipped, and the next
    job of a multirun runs as usual.

    Note that Lightning does not stop before ``Trainer(min_epochs/min_steps)`` are reached.

    Args:
        monitor: None checks the loss returned by ``training_step`` after every training batch;
            a metric name (e.g. ``"train/loss"``, ``"val/loss"``) checks
            ``trainer.callback_metrics[monitor]`` instead, whenever it is present.
        check_on: ``"train_batch_end"`` (after every training batch) or ``"validation_end"``
            (after every validation run, for validation metrics).

    Example::

        trainer = Trainer(callbacks=[TerminateOnNaN()])
        trainer.fit(model, datamodule)
        if any(getattr(cb, "run_failed", False) for cb in trainer.callbacks):
            print("diverged")
    """

    def __init__(self, monitor: str | None = None, check_on: str = "train_batch_end") -> None:
        super().__init__()
        if check_on not in _CHECK_ON:
            raise ValueError(f"`check_on` can be {' or '.join(_CHECK_ON)}, got {check_on!r}")
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"`monitor` must be None (the training loss) or a metric name, got {monitor!r}")
        if check_on == "validation_end" and monitor is None:
            raise ValueError("`check_on=validation_end` needs `monitor` (a metric name such as 'val/loss')")
        self.monitor = monitor
        self.check_on = check_on
        self.run_failed = False
        self.reason: str | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, check_on=self.check_on)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run_failed = False
        self.reason = None

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.check_on != "train_batch_end":
            return
        if self.monitor is None:
            value, name = _loss_of(outputs), "training loss"
        else:
            value, name = trainer.callback_metrics.get(self.monitor), self.monitor
        self._check(trainer, value, name)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.check_on != "validation_end" or trainer.sanity_checking:
            return
        self._check(trainer, trainer.callback_metrics.get(self.monitor), self.monitor)

    def _check(self, trainer: pl.Trainer, value: Any, name: str | None) -> None:
        bad = not is_finite(value)
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad or self.run_failed:
            return
        self.run_failed = True
        trainer.should_stop = True
        shown = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        local = f"{shown}" if not is_finite(value) else "finite here, non-finite on another rank"
        self.reason = (
            f"{name} is not finite ({local}) at epoch {trainer.current_epoch}, global step {trainer.global_step}"
        )
        if trainer.is_global_zero:
            log.error("TerminateOnNaN: %s; stopping the run, it is reported as failed.", self.reason)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"run_failed": self.run_failed, "reason": self.reason}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # A resumed run starts healthy again: only the reason is kept for the record.
        self.reason = state_dict.get("reason")


def _loss_of(outputs: Any) -> Any:
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    return outputs
