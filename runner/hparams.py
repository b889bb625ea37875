"""Log the full resolved config and parameter counts as hyperparameters to every logger."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

__all__ = ["log_hyperparameters", "parameter_counts"]


def parameter_counts(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def log_hyperparameters(cfg: DictConfig, model: pl.LightningModule, trainer: pl.Trainer) -> dict[str, Any]:
    """Send the resolved config (minus Hydra's own) plus ``model/params/*`` to all of ``trainer.loggers``."""
    hparams: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    hparams.pop("hydra", None)
    hparams["model/params"] = parameter_counts(model)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
    return hparams
