"""What the classifier and the detector share: optimizer and scheduler, the scheduler's horizon, the best-metric restore.

:class:`TaskModule` is the LightningModule both derive from. A subclass declares

- ``task``: ``"classification"`` or ``"detection"`` (``interpret.task_for(model)`` reads it);
- ``best_metric``: the name of its :class:`~torchmetrics.MaxMetric` attribute holding the best
  validation value of the run, which is also the key that value is kept under in a checkpoint
  (``val_acc_best``, ``val_map_50_best``), so a resumed run logs the best over the whole run;
- ``validation_metrics``: the metric attributes reset when training starts (the sanity check ran
  validation first).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch

__all__ = ["HORIZON_ARGS", "SCHEDULER_INTERVALS", "TaskModule"]

#: scheduler arguments that give its length; null in the config = this run's length
HORIZON_ARGS: tuple[str, ...] = ("T_max", "total_steps", "total_iters")
#: what ``model.scheduler_interval`` can be
SCHEDULER_INTERVALS: tuple[str, ...] = ("epoch", "step")


class TaskModule(pl.LightningModule):
    """Base LightningModule of this project's models (see the module docstring).

    Args:
        optimizer: a ``_partial_`` optimizer factory taking ``params``; None: AdamW, lr 1e-3.
        scheduler: a ``_partial_`` scheduler factory taking ``optimizer``; its length (``T_max``,
            ``total_steps``, ``total_iters``) left null is filled with this run's length.
        scheduler_interval: ``epoch`` or ``step`` (``model.scheduler_interval``).
        scheduler_monitor: the metric a ``ReduceLROnPlateau``-like scheduler watches.
        layer_decay: layer-wise LR decay (timm's ``param_groups_layer_decay`` over the ``backbone``
            attribute): the last layer group trains at the optimizer's ``lr``, each group below at
            ``layer_decay`` times the one above; bias/norm/position embeddings without weight decay.
            None: one group, every parameter at ``lr``.
    """

    task: ClassVar[str]
    best_metric: ClassVar[str]
    validation_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        layer_decay: float | None = None,
    ) -> None:
        super().__init__()
        if layer_decay is not None and (not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1):
            raise ValueError(f"model.layer_decay must be in (0, 1] or null, got {layer_decay!r}")
        self.layer_decay = layer_decay
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(
                f"model.scheduler_interval can be {' or '.join(SCHEDULER_INTERVALS)}, got {scheduler_interval!r}"
            )
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self._restored_best: float | None = None
        self._schedule_horizon: dict[str, int] = {}

    # ------------------------------------------------------ best-metric restore
    def on_train_start(self) -> None:
        # Lightning runs a sanity check on validation first: reset so the best value is honest,
        # then bring back the best value of the run this one resumes (kept in the checkpoint).
        for name in self.validation_metrics:
            getattr(self, name).reset()
        best = getattr(self, self.best_metric)
        best.reset()
        if self._restored_best is not None:
            best.update(torch.tensor(self._restored_best, device=self.device))
        # A resumed scheduler carries the horizon of the earlier run (e.g. T_max): use this run's.
        self._apply_schedule_horizon()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the local state, no collective: every rank updates it with the same (synced) value
        value = float(getattr(self, self.best_metric).max_value)
        if math.isfinite(value):
            checkpoint[self.best_metric] = value

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        value = checkpoint.get(self.best_metric)
        self._restored_best = float(value) if value is not None else None

    # ---------------------------------------------------- optimizer, scheduler
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        elif self.layer_decay is not None:
            optimizer = self.optimizer_factory(params=self._layer_decay_groups())
        else:
            optimizer = self.optimizer_factory(params=self.trainer.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        self._schedule_horizon = self._horizon_arguments()
        scheduler = self.scheduler_factory(optimizer=optimizer, **self._schedule_horizon)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler, "interval": self.scheduler_interval, "monitor": self.scheduler_monitor,
            },
        }

    def _layer_decay_groups(self) -> list[dict[str, Any]]:
        """timm's layer-decay parameter groups of ``self.backbone``, each with its scaled ``lr`` set."""
        from timm.optim import param_groups_layer_decay

        backbone = getattr(self, "backbone", None)
        if not isinstance(backbone, torch.nn.Module):
            raise ValueError(f"model.layer_decay needs a model with a timm backbone; {type(self).__name__} has none")
        backbone = getattr(backbone, "_orig_mod", backbone)  # torch.compile's wrapper: the same parameters
        keywords = dict(getattr(self.optimizer_factory, "keywords", {}) or {})
        lr, weight_decay = float(keywords.get("lr", 1e-3)), float(keywords.get("weight_decay", 0.0))
        no_decay = backbone.no_weight_decay() if hasattr(backbone, "no_weight_decay") else ()
        groups = param_groups_layer_decay(
            backbone, weight_decay=weight_decay, no_weight_decay_list=no_decay, layer_decay=float(self.layer_decay)
        )
        for group in groups:  # the scale in the group's own lr, so torch's and timm's schedulers both keep it
            group["lr"] = lr * group.pop("lr_scale", 1.0)
        return groups

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """timm schedulers (``runner.models.lr_schedule``) step by update count; torch's as Lightning does."""
        from timm.scheduler.scheduler import Scheduler

        if isinstance(scheduler, Scheduler):
            step = self.global_step if self.scheduler_interval == "step" else self.current_epoch + 1
            scheduler.step_update(num_updates=step)
        else:
            super().lr_scheduler_step(scheduler, metric)

    def _horizon_arguments(self) -> dict[str, int]:
        """Fill the scheduler's length (``T_max``, ``total_steps``, ``total_iters``) when the config left it null.

        It is this run's real length: ``trainer.estimated_stepping_batches`` optimizer steps for
        ``scheduler_interval=step``, ``trainer.max_epochs`` epochs for ``epoch``.

        Raises:
            ValueError: the length is null and the run is unbounded (names the keys to set).
        """
        factory = self.scheduler_factory
        given = dict(getattr(factory, "keywords", {}) or {})
        try:
            params = inspect.signature(getattr(factory, "func", factory)).parameters
        except (TypeError, ValueError):
            return {}
        names = [n for n in HORIZON_ARGS if n in params and given.get(n, params[n].default) is None]
        extra = self._steps_per_epoch() if "steps_per_epoch" in params and given.get("steps_per_epoch") is None else {}
        if not names:
            return {n: given[n] for n in HORIZON_ARGS if n in params and isinstance(given.get(n), int)} | extra
        if self.scheduler_interval == "step":
            length = self.trainer.estimated_stepping_batches
            where = "trainer.max_epochs or trainer.max_steps"
        else:
            length = self.trainer.max_epochs
            where = "trainer.max_epochs"
        if length is None or not math.isfinite(length) or length < 1:
            raise ValueError(
                f"model.scheduler.{names[0]}=null takes the run's length from {where}, which is unbounded "
                f"({length}); set model.scheduler.{names[0]} or {where}"
            )
        return {n: int(length) for n in names} | extra

    def _steps_per_epoch(self) -> dict[str, int]:
        """``steps_per_epoch`` of a warmup given in epochs: 1 (``scheduler_interval=epoch``) or optimizer steps."""
        if self.scheduler_interval == "epoch":
            return {"steps_per_epoch": 1}
        _ = self.trainer.estimated_stepping_batches  # sets up the training loader, so its length is known
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            return {}  # an iterable without length: the scheduler then asks for the warmup in steps
        return {"steps_per_epoch": max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))}

    def _apply_schedule_horizon(self) -> None:
        """After a resume, give the restored schedulers this run's horizon and put the LR on that schedule."""
        if not self._schedule_horizon or self._trainer is None:
            return
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            changed = False
            for name, value in self._schedule_horizon.items():
                if getattr(scheduler, name, value) != value:
                    setattr(scheduler, name, value)
                    changed = True
            if changed and hasattr(scheduler, "_get_closed_form_lr"):
                lrs = scheduler._get_closed_form_lr()
                for group, lr in zip(scheduler.optimizer.param_groups, lrs):
                    group["lr"] = lr
                scheduler._last_lr = list(lrs)
