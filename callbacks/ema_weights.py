"""EMAWeights: an exponential moving average of the model's weights (timm's ``ModelEmaV3``), validated beside the model."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

__all__ = ["EMAWeights"]

log = logging.getLogger(__name__)


class EMAWeights(Callback):
    """Keep an EMA of every weight and buffer of the LightningModule, and validate it after each validation.

    The average is timm's ``ModelEmaV3`` (as timm's ``train.py`` keeps it), updated after every
    optimizer step with ``decay`` (optionally warmed up: ``ModelEmaV3``'s ``use_warmup``). After
    each validation (not the sanity check) the EMA copy classifies the same validation batches and
    logs ``{prefix}/acc_ema`` and ``{prefix}/acc_ema_best`` (the best over the run, resumed with it);
    correct and total counts are summed over DDP ranks (every rank runs the same collective).

    The EMA weights live in the checkpoint (this callback's state: ``ema_state_dict``, keys as the
    LightningModule's ``state_dict``), so a resumed run continues the same average exactly; the
    model's own weights are what training and ``trainer.test`` use.

    Args:
        decay: the EMA decay per update, in (0, 1) (e.g. 0.9998; smaller for short runs).
        use_warmup: timm's EMA warmup (the decay grows from 0 towards ``decay`` over the first steps).
        update_after_step: the first optimizer step that updates the average (before it: a copy).
        validate: validate the EMA weights after each validation and log the ``*_ema`` metrics.
        prefix: the metric prefix (``val`` -> ``val/acc_ema``).

    Raises:
        ValueError: ``decay`` outside (0, 1) or a negative ``update_after_step`` (naming the key).
    """

    def __init__(
        self,
        decay: float = 0.9998,
        use_warmup: bool = False,
        update_after_step: int = 0,
        validate: bool = True,
        prefix: str = "val",
    ) -> None:
        if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay must be in (0, 1) (e.g. 0.9998), got {decay!r}")
        if not isinstance(update_after_step, int) or update_after_step < 0:
            raise ValueError(f"callbacks.ema.update_after_step must be an int >= 0, got {update_after_step!r}")
        self.decay = float(decay)
        self.use_warmup = bool(use_warmup)
        self.update_after_step = update_after_step
        self.validate = bool(validate)
        self.prefix = prefix
        self.ema: Any = None  # timm.utils.ModelEmaV3, made in setup
        self.best = -math.inf
        self._pending: dict[str, Any] | None = None

    # ------------------------------------------------------------- the average
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.ema is not None:
            return
        from timm.utils import ModelEmaV3

        # before the module's own setup (torch.compile): a plain copy, its state_dict in the same order
        self.ema = ModelEmaV3(
            pl_module, decay=self.decay, use_warmup=self.use_warmup, update_after_step=self.update_after_step
        )
        if self._pending is not None:
            self._load(self._pending)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.ema is not None:
            self.ema.module.to(pl_module.device)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # once per optimizer step (gradient accumulation: the batch that stepped)
        if self.ema is not None and trainer.global_step != getattr(self, "_last_step", None):
            self._last_step = trainer.global_step
            self.ema.update(pl_module, step=trainer.global_step)

    # -------------------------------------------------------------- validation
    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.validate or self.ema is None or trainer.sanity_checking:
            return
        loaders = trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        correct = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        total = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        limits = list(trainer.num_val_batches) + [math.inf] * len(loaders)  # the batches the model validated on
        model = self.ema.module
        with torch.no_grad():
            for loader, limit in zip(loaders, limits):
                for i, batch in enumerate(loader):
                    if i >= limit:
                        break
                    x, y = batch[0].to(pl_module.device), batch[1].to(pl_module.device)
                    logits = model(x)
                    correct += (logits.argmax(dim=-1) == y).sum()
                    total += y.numel()
        correct = trainer.strategy.reduce(correct, reduce_op="sum")
        total = trainer.strategy.reduce(total, reduce_op="sum")
        acc = float(correct / total.clamp(min=1))
        self.best = max(self.best, acc)
        pl_module.log(f"{self.prefix}/acc_ema", acc, prog_bar=True)
        pl_module.log(f"{self.prefix}/acc_ema_best", self.best)

    # ------------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        if self.ema is None:
            return dict(self._pending or {})
        return {
            "ema_state_dict": {k: v.detach().cpu().clone() for k, v in self.ema.module.state_dict().items()},
            "best": self.best,
            "decay": self.decay,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.ema is None:
            self._pending = dict(state_dict)
        else:
            self._load(state_dict)

    def _load(self, state: dict[str, Any]) -> None:
        weights = state.get("ema_state_dict")
        if weights:
            self.ema.module.load_state_dict(weights)
        self.best = float(state.get("best", self.best))
        self._pending = None
