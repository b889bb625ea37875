"""Linear LR warmup, then cosine decay: timm's ``CosineLRScheduler``, stepped per optimizer step.

``model.scheduler._target_: runner.models.lr_schedule.WarmupCosineLR`` with
``model.scheduler_interval: step``. :class:`~runner.models.module.TaskModule` fills ``T_max`` (the run's
optimizer steps) and ``steps_per_epoch`` when they are null, and steps it with
``step_update(global_step)``, so a resumed run continues on exactly the same curve (the LR is a
function of the step count alone).
"""

from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler

__all__ = ["WarmupCosineLR"]


class WarmupCosineLR(CosineLRScheduler):
    """Warmup from ``warmup_lr_init`` to each group's LR over ``warmup_steps`` (or ``warmup_epochs``), then cosine to ``min_lr``.

    As in timm's ``train.py`` the warmup overlaps the start of the cosine (``warmup_prefix=False``).

    Args:
        optimizer: the optimizer (every param group keeps its own LR: layer decay).
        T_max: the schedule's length in scheduler steps; null in the config: the run's length.
        warmup_epochs: warmup length in epochs (times ``steps_per_epoch``); used when ``warmup_steps`` is null.
        warmup_steps: warmup length in steps; overrides ``warmup_epochs``.
        steps_per_epoch: filled in by the module (optimizer steps per epoch; 1 for ``scheduler_interval=epoch``).
        warmup_lr_init: the LR the warmup starts from.
        min_lr: the LR at the end of the cosine.

    Raises:
        ValueError: a negative warmup, a warmup not shorter than ``T_max``, or ``warmup_epochs`` without
            a known epoch length; each names its ``model.scheduler.*`` key.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_max: int | None = None,  # noqa: N803 - the same name as torch's CosineAnnealingLR, so configs merge
        warmup_epochs: float = 0.0,
        warmup_steps: int | None = None,
        steps_per_epoch: int | None = None,
        warmup_lr_init: float = 1e-6,
        min_lr: float = 0.0,
    ) -> None:
        if T_max is None or T_max < 1:
            raise ValueError(f"model.scheduler.T_max must be a positive number of steps (null: the run's), got {T_max!r}")
        if warmup_steps is not None:
            if not isinstance(warmup_steps, int) or warmup_steps < 0:
                raise ValueError(f"model.scheduler.warmup_steps must be an int >= 0 or null, got {warmup_steps!r}")
            warmup = warmup_steps
        else:
            if not isinstance(warmup_epochs, (int, float)) or warmup_epochs < 0:
                raise ValueError(f"model.scheduler.warmup_epochs must be >= 0, got {warmup_epochs!r}")
            if warmup_epochs and steps_per_epoch is None:
                raise ValueError(
                    "model.scheduler.warmup_epochs needs the epoch length, unknown for this loader: "
                    "set model.scheduler.warmup_steps instead"
                )
            warmup = round(warmup_epochs * (steps_per_epoch or 1))
        if warmup and warmup >= T_max:
            raise ValueError(
                f"model.scheduler: the warmup ({warmup} steps) must be shorter than the schedule (T_max={T_max}); "
                "lower model.scheduler.warmup_epochs / warmup_steps"
            )
        self.warmup_length = int(warmup)
        super().__init__(
            optimizer, t_initial=int(T_max), lr_min=min_lr, warmup_t=int(warmup),
            warmup_lr_init=warmup_lr_init, t_in_epochs=False,
        )

    @property
    def T_max(self) -> int:  # noqa: N802 - the name TaskModule's horizon logic reads and sets
        """The schedule's length (timm's ``t_initial``); a resume with a longer run stretches it."""
        return int(self.t_initial)

    @T_max.setter
    def T_max(self, value: int) -> None:  # noqa: N802
        self.t_initial = int(value)
