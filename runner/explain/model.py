"""The model phase of ``explain.py``: the model, its weights, its datamodule and normalisation.

:func:`load_model` rebuilds everything an explanation needs from a checkpoint into one
:class:`LoadedModel`: the model (eval mode, on the device), the run's datamodule when it can be
rebuilt (its sample images, class names and normalisation), the mean/std the model was trained
with and its input size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig

from interpret.layers import data_image_size, data_normalization
from runner.errors import short_message
from runner.explain.checkpoint import load_checkpoint_model, run_dir_of, saved_config

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "load_model"]

@dataclass
class LoadedModel:
    """A checkpoint's model with what explaining it needs.

    Attributes:
        ckpt: the checkpoint file.
        run_dir: its run directory.
        model: the model with the checkpoint's weights, in eval mode on the device.
        checkpoint: the loaded checkpoint dict.
        datamodule: the run's datamodule (None when it cannot be rebuilt and is not needed).
        mean: per-channel normalisation mean the model was trained with.
        std: per-channel normalisation std.
        size: ``(H, W)`` the model sees.
        class_names: the datamodule's class names (empty: indices).
    """

    ckpt: Path
    run_dir: Path
    model: torch.nn.Module
    checkpoint: dict
    datamodule: Any
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int]
    class_names: list[str]


def _datamodule(train_cfg: DictConfig | None, checkpoint: dict, model: torch.nn.Module, need: bool) -> Any:
    """The run's datamodule with the normalisation it trained with (None when it cannot be built and is not needed)."""
    import hydra

    if train_cfg is None or "data" not in train_cfg:
        if need:
            raise ValueError(
                "images is empty and the checkpoint has no run config next to it (.hydra/config.yaml) to take "
                "sample images from; give images=[a.png,...]"
            )
        return None
    try:
        datamodule = hydra.utils.instantiate(train_cfg.data)
    except Exception as err:  # noqa: BLE001
        if need:
            raise ValueError(f"images is empty and the run's datamodule cannot be rebuilt: {short_message(err)}") from err
        log.warning(f"The run's datamodule cannot be rebuilt ({short_message(err)}); class names are indices")
        return None
    state = checkpoint.get(type(datamodule).__qualname__)
    if isinstance(state, dict) and hasattr(datamodule, "load_state_dict"):
        datamodule.load_state_dict(state)
    elif hasattr(datamodule, "use_model_normalization"):
        datamodule.use_model_normalization(model)
    return datamodule


def _normalization(datamodule: Any, checkpoint: dict, model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The run's datamodule's ``mean``/``std``, else a datamodule state saved in the checkpoint, else
    the one fallback of :func:`interpret.layers.data_normalization` (the model's own, else ImageNet's)."""
    if datamodule is None or getattr(datamodule, "mean", None) is None:
        for value in checkpoint.values():  # a datamodule's saved state: {"mean": ..., "std": ...}
            if isinstance(value, dict) and set(value) >= {"mean", "std"} and not isinstance(value.get("mean"), torch.Tensor):
                datamodule = SimpleNamespace(mean=value["mean"], std=value["std"])
                break
    return data_normalization(datamodule, model)


def load_model(ckpt: Path, device: torch.device, need_samples: bool, weights: str = "model") -> LoadedModel:
    """Rebuild the model of ``ckpt`` (from its run's saved config when there is one) with its data settings.

    Args:
        ckpt: the checkpoint file.
        device: where the model goes.
        need_samples: no images were given: the run's datamodule must be rebuilt for its samples.
        weights: ``model`` or ``ema`` (the checkpoint's EMA weights).

    Raises:
        ValueError: the checkpoint cannot be rebuilt, or samples are needed and there is no datamodule.
    """
    run_dir = run_dir_of(ckpt)
    train_cfg = saved_config(run_dir)
    if train_cfg is None:
        log.warning(f"No run config in {run_dir}: the model is rebuilt from the checkpoint's hyperparameters")
    model, checkpoint = load_checkpoint_model(ckpt, train_cfg, device, weights)
    datamodule = _datamodule(train_cfg, checkpoint, model, need=need_samples)
    mean, std = _normalization(datamodule, checkpoint, model)
    return LoadedModel(
        ckpt=ckpt,
        run_dir=run_dir,
        model=model,
        checkpoint=checkpoint,
        datamodule=datamodule,
        mean=mean,
        std=std,
        size=data_image_size(None, model),
        class_names=list(getattr(datamodule, "class_names", []) or []),
    )
