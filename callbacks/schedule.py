"""EveryN: the one every-n schedule (in optimizer steps or in epochs) of every periodic callback.

The convention, shared by every periodic callback of this project:

- per steps (``every_n_steps=n``): at global steps n, 2n, 3n, ... counted *after* the optimizer
  step (``trainer.global_step`` in ``on_train_batch_end``; step 0 is never due);
- per epochs (``every_n_epochs=n``): at epochs 0, n, 2n, ... (``epoch % n == 0``);
- when both are given, the steps win: the schedule is per steps and no epoch is due;
- with neither, nothing is ever due.

A step (or epoch) marked done with :meth:`EveryN.mark_step` (:meth:`EveryN.mark_epoch`) is not
due again, so a hook that fires several times at one global step (gradient accumulation) or after
a resume logs once. The last marked step/epoch is kept in :meth:`EveryN.state_dict` under
``last_logged_step`` / ``last_logged_epoch`` (the keys the callbacks' checkpoints always held).
"""

from __future__ import annotations

from typing import Any

from interpret.checks import positive_int

__all__ = ["EveryN"]


class EveryN:
    """When a periodic callback acts: every ``every_n_steps`` global steps or every ``every_n_epochs`` epochs.

    Example::

        schedule = EveryN(every_n_steps=100)
        if schedule.step_due(trainer.global_step):   # steps 100, 200, ... not yet done
            schedule.mark_step(trainer.global_step)
            ...  # measure and log

    Args:
        every_n_steps: due at global steps n, 2n, ... (None: not per steps).
        every_n_epochs: due at epochs 0, n, 2n, ... (None: not per epochs; ignored when
            ``every_n_steps`` is given).
        steps_key: how argument errors name ``every_n_steps`` (the callback's config key).
        epochs_key: how argument errors name ``every_n_epochs`` (the callback's config key).

    Raises:
        ValueError: a value that is neither None nor an int >= 1, naming its config key.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        *,
        steps_key: str = "log_every_n_steps",
        epochs_key: str = "log_every_n_epochs",
    ) -> None:
        self.every_n_steps = positive_int(every_n_steps, f"`{steps_key}`", allow_none=True)
        self.every_n_epochs = positive_int(every_n_epochs, f"`{epochs_key}`", allow_none=True)
        #: the last global step marked done (-1: none)
        self.last_step = -1
        #: the last epoch marked done (-1: none)
        self.last_epoch = -1

    @property
    def per_steps(self) -> bool:
        """Whether the schedule counts steps (``every_n_steps`` given)."""
        return self.every_n_steps is not None

    @property
    def per_epochs(self) -> bool:
        """Whether the schedule counts epochs (``every_n_epochs`` given and no ``every_n_steps``)."""
        return self.every_n_steps is None and self.every_n_epochs is not None

    def step_due(self, global_step: int) -> bool:
        """Whether ``global_step`` is one of n, 2n, 3n, ... and not marked done yet."""
        n = self.every_n_steps
        return n is not None and global_step > 0 and global_step % n == 0 and global_step != self.last_step

    def epoch_due(self, epoch: int) -> bool:
        """Whether ``epoch`` is one of 0, n, 2n, ... (per-epoch schedule) and not marked done yet."""
        n = self.every_n_epochs
        return self.per_epochs and n is not None and epoch % n == 0 and epoch != self.last_epoch

    def mark_step(self, global_step: int) -> bool:
        """Record ``global_step`` as done; returns False when it already was (the last one marked)."""
        if global_step == self.last_step:
            return False
        self.last_step = global_step
        return True

    def mark_epoch(self, epoch: int) -> bool:
        """Record ``epoch`` as done; returns False when it already was (the last one marked)."""
        if epoch == self.last_epoch:
            return False
        self.last_epoch = epoch
        return True

    def state_dict(self) -> dict[str, Any]:
        """``{"last_logged_step": ...}`` per steps, ``{"last_logged_epoch": ...}`` per epochs, else ``{}``."""
        if self.per_steps:
            return {"last_logged_step": self.last_step}
        if self.per_epochs:
            return {"last_logged_epoch": self.last_epoch}
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (missing keys: nothing done yet)."""
        self.last_step = int(state_dict.get("last_logged_step", -1))
        self.last_epoch = int(state_dict.get("last_logged_epoch", -1))

    def __repr__(self) -> str:
        return f"EveryN(every_n_steps={self.every_n_steps}, every_n_epochs={self.every_n_epochs})"
