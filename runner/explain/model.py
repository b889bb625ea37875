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
from typing import Any

import torch
from omegaconf import DictConfig

from runner.errors import short_message
from runner.explain.checkpoint import load_checkpoint_model, run_dir_of, saved_config

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "load_model"]

_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


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
    elif hasattr(datamodule, "set_normalization") and hasattr(model, "data_config"):
        datamodule.set_normalization(model.data_config["mean"], model.data_config["std"])
    return datamodule


def _normalization(datamodule: Any, checkpoint: dict, model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if datamodule is not None and getattr(datamodule, "mean", None) is not None:
        return tuple(datamodule.mean), tuple(datamodule.std)
    for value in checkpoint.values():  # a datamodule's saved state: {"mean": ..., "std": ...}
        if isinstance(value, dict) and set(value) >= {"mean", "std"} and not isinstance(value.get("mean"), torch.Tensor):
            return tuple(value["mean"]), tuple(value["std"])
    config = getattr(model, "data_config", None) or _IMAGENET
    return tuple(config["mean"]), tuple(config["std"])


def _input_size(model: torch.nn.Module, checkpoint: dict) -> tuple[int, int]:
    size = (checkpoint.get("hyper_parameters") or {}).get("image_size")
    if isinstance(size, int):
        return size, size
    config = getattr(model, "data_config", None) or {}
    shape = config.get("input_size") or (3, 224, 224)
    return int(shape[-2]), int(shape[-1])


def load_model(ckpt: Path, device: torch.device, need_samples: bool) -> LoadedModel:
    """Rebuild the model of ``ckpt`` (from its run's saved config when there is one) with its data settings.

    Args:
        ckpt: the checkpoint file.
        device: where the model goes.
        need_samples: no images were given: the run's datamodule must be rebuilt for its samples.

    Raises:
        ValueError: the checkpoint cannot be rebuilt, or samples are needed and there is no datamodule.
    """
    run_dir = run_dir_of(ckpt)
    train_cfg = saved_config(run_dir)
    if train_cfg is None:
        log.warning(f"No run config in {run_dir}: the model is rebuilt from the checkpoint's hyperparameters")
    model, checkpoint = load_checkpoint_model(ckpt, train_cfg, device)
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
        size=_input_size(model, checkpoint),
        class_names=list(getattr(datamodule, "class_names", []) or []),
    )
