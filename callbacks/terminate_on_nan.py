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

    With ``monitor=None`` the loss of every training batch is checked *before* the optimizer
    step: the loss is taken in ``on_before_backward`` and judged in ``on_before_optimizer_step``,
    a hook every rank reaches in lockstep once per step (after DDP's gradient all-reduce, with no
    rank-0-only code in between), where the decision is agreed across ranks with
    ``trainer.strategy.reduce_boolean_decision(..., all=False)`` (one bad rank stops all). A bad
    step is then never applied: every gradient is dropped (``optimizer.step`` skips parameters
    without a gradient) and the buffers the NaN forward pass touched (BatchNorm statistics) are put
    back, so the weights stay finite and the validation and checkpoints that follow (``last.ckpt``)
    hold the last finite weights. As a last guard, a checkpoint with non-finite weights is refused.

    When it fires it sets ``trainer.should_stop = True`` and ``self.run_failed = True`` and records
    ``self.reason``; it never raises nor calls ``sys.exit``. The runner reads ``run_failed`` after
    ``fit``: the job's ``optimized_metric`` is reported as NaN, testing is skipped, a single run
    exits with status 1, and the next job of a multirun runs as usual.

    Note that Lightning does not stop before ``Trainer(min_epochs/min_steps)`` are reached.

    Args:
        monitor: None checks the loss returned by ``training_step`` before every optimizer step;
            a metric name (e.g. ``"train/loss"``, ``"val/loss"``) checks
            ``trainer.callback_metrics[monitor]`` instead, whenever it is present (after the step).
        check_on: ``"train_batch_end"`` (every training batch) or ``"validation_end"``
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
        self._bad_loss: Any = None  # the first non-finite loss seen since the last optimizer step
        self._buffers: dict[str, torch.Tensor] = {}

    @property
    def _checks_loss(self) -> bool:
        return self.monitor is None and self.check_on == "train_batch_end"

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, check_on=self.check_on)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run_failed = False
        self.reason = None
        self._bad_loss = None

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._checks_loss and (batch_idx + 1) % trainer.accumulate_grad_batches in (0, 1):
            # the first micro-batch of a step: keep its floating-point buffers (BatchNorm statistics)
            self._buffers = {
                name: buf.detach().clone()
                for name, buf in pl_module.named_buffers()
                if buf.is_floating_point()
            }

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self._checks_loss and self._bad_loss is None and not is_finite(loss):
            self._bad_loss = loss.detach()

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._checks_loss:
            return
        value, self._bad_loss = self._bad_loss, None
        if not self._decide(trainer, value, "training loss"):
            return
        # never apply this step: no gradient, no update (also no momentum/weight decay update)
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        with torch.no_grad():
            for name, buf in pl_module.named_buffers():
                saved = self._buffers.get(name)
                if saved is not None and saved.shape == buf.shape:
                    buf.copy_(saved)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.check_on != "train_batch_end" or self.monitor is None:
            return
        self._decide(trainer, trainer.callback_metrics.get(self.monitor), self.monitor)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.check_on != "validation_end" or trainer.sanity_checking:
            return
        self._decide(trainer, trainer.callback_metrics.get(self.monitor), self.monitor)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = [k for k, v in checkpoint.get("state_dict", {}).items() if isinstance(v, torch.Tensor)
               and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise RuntimeError(
                f"TerminateOnNaN: refusing to save a checkpoint with non-finite weights ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}) at global step {trainer.global_step}"
            )

    def _decide(self, trainer: pl.Trainer, value: Any, name: str | None) -> bool:
        """Agree across ranks whether ``value`` is bad; on the first bad one stop the run. Returns the decision."""
        bad = not is_finite(value)
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return False
        if self.run_failed:
            return True
        self.run_failed = True
        trainer.should_stop = True
        shown = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        local = f"{shown}" if not is_finite(value) else "finite here, non-finite on another rank"
        self.reason = (
            f"{name} is not finite ({local}) at epoch {trainer.current_epoch}, global step {trainer.global_step}"
        )
        if trainer.is_global_zero:
            log.error("TerminateOnNaN: %s; stopping the run, it is reported as failed.", self.reason)
        return True

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
