"""Input checks and batched model evaluation shared by the metrics (plain PyTorch)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from interpret.checks import positive_int
from interpret.methods.base import Explainer, check_target_range
from interpret.model_state import frozen_eval
from interpret.layers import model_device, model_dtype, resolve_normalization

__all__ = [
    "MapFunction",
    "as_batch",
    "as_maps",
    "as_masks",
    "as_targets",
    "call_explainer",
    "check_chunk",
    "chunks",
    "pixel_std",
    "predict_proba",
    "predicted_classes",
]

#: an explainer instance, or any callable ``images -> maps`` / ``(images, targets) -> maps``
MapFunction = Explainer | Callable[..., torch.Tensor]


def check_chunk(batch_size: int, name: str = "batch_size") -> int:
    """Check a chunk-size argument: an int >= 1."""
    positive_int(batch_size, name)
    return batch_size


def as_batch(model: nn.Module | None, images: torch.Tensor) -> torch.Tensor:
    """A float ``(B, C, H, W)`` copy of ``images`` on the model's device and dtype."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor (normalised as the model expects), got {shape}")
    if images.shape[0] == 0:
        raise ValueError("images is empty (B = 0)")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor normalised as the model expects, got {images.dtype}")
    device = model_device(model) if model is not None else images.device
    dtype = model_dtype(model) if model is not None else images.dtype
    with torch.inference_mode(False):
        return images.detach().to(device=device, dtype=dtype, copy=True)


def as_maps(maps: torch.Tensor, batch: int, size: tuple[int, int], name: str = "maps") -> torch.Tensor:
    """Check and squeeze maps to float32 ``(B, H, W)``; ``(B, 1, H, W)`` is accepted."""
    if not isinstance(maps, torch.Tensor):
        raise ValueError(f"{name} must be a (B, H, W) tensor, got {type(maps).__name__}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim == 2 and batch == 1:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[0] != batch or tuple(maps.shape[-2:]) != tuple(size):
        raise ValueError(
            f"{name} must have shape (B, H, W) = ({batch}, {size[0]}, {size[1]}) like the images, "
            f"got {tuple(maps.shape)}"
        )
    with torch.inference_mode(False):
        return torch.nan_to_num(maps.detach().float().clone(), nan=0.0, posinf=0.0, neginf=0.0)


def as_masks(masks: Any, batch: int, size: tuple[int, int]) -> torch.Tensor:
    """Check ground-truth masks and return a bool ``(B, H, W)`` tensor on the CPU."""
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(masks)
    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"masks must be a (B, H, W) tensor or array, got {type(masks).__name__}")
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3 or masks.shape[0] != batch or tuple(masks.shape[-2:]) != tuple(size):
        raise ValueError(
            f"masks must have shape (B, H, W) = ({batch}, {size[0]}, {size[1]}) like the images/maps, "
            f"got {tuple(masks.shape)}"
        )
    return (masks.detach().cpu() > 0) if masks.dtype != torch.bool else masks.detach().cpu()


def as_targets(targets: Any, batch: int, device: torch.device) -> torch.Tensor | None:
    """``(B,)`` long targets on ``device``, or None (the predicted class)."""
    if targets is None:
        return None
    if isinstance(targets, int) and not isinstance(targets, bool):
        return torch.full((batch,), targets, dtype=torch.long, device=device)
    tensor = torch.as_tensor(targets)
    if tensor.ndim != 1 or tensor.shape[0] != batch or tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise ValueError(
            f"targets must be None, an int or one integer class per image ({batch}), "
            f"got {tensor.dtype} of shape {tuple(tensor.shape)}"
        )
    if bool((tensor < 0).any()):
        raise ValueError(f"targets must be >= 0, got {int(tensor.min())}")
    return tensor.to(device=device, dtype=torch.long)


def chunks(count: int, size: int) -> Iterator[slice]:
    """Slices ``[0, size), [size, 2 size), ...`` covering ``range(count)``."""
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def predict_proba(
    model: nn.Module,
    make_inputs: Callable[[slice], torch.Tensor],
    count: int,
    target_of: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    """Softmax probability of ``target_of[i]`` for ``count`` inputs built chunk by chunk.

    Args:
        model: the classifier (called in eval mode with frozen parameters; restored after).
        make_inputs: builds the inputs of one slice of ``range(count)``.
        count: how many inputs in all.
        target_of: ``(count,)`` class of each input.
        batch_size: most inputs per forward pass.

    Returns:
        float32 ``(count,)`` probabilities on the CPU.
    """
    out = torch.empty(count, dtype=torch.float32)
    with frozen_eval(model), torch.no_grad():
        for part in chunks(count, batch_size):
            logits = model(make_inputs(part))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(f"the model must return logits of shape (B, num_classes), got {shape}")
            targets = target_of[part].to(logits.device)
            check_target_range(targets, logits.shape[1])
            probs = torch.softmax(logits.float(), dim=1)
            out[part] = probs.gather(1, targets[:, None])[:, 0].cpu()
    return out


def predicted_classes(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The arg-max class of each image, ``(B,)`` long on the images' device."""
    parts = []
    with frozen_eval(model), torch.no_grad():
        for part in chunks(images.shape[0], batch_size):
            parts.append(model(images[part]).argmax(dim=1))
    return torch.cat(parts).to(images.device)


def _takes_targets(function: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def call_explainer(
    explainer: MapFunction, images: torch.Tensor, targets: torch.Tensor | None, batch_size: int
) -> torch.Tensor:
    """Maps ``(B, H, W)`` of ``explainer`` for ``images``, ``batch_size`` images per call.

    ``explainer`` is an :class:`~interpret.base.Explainer` (its ``explain`` is called with
    ``target_class=targets``) or a callable ``f(images)`` / ``f(images, targets)`` returning
    ``(B, H, W)`` (or ``(B, 1, H, W)``) maps.
    """
    if isinstance(explainer, Explainer):
        def function(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
            return explainer.explain(x, target_class=t)
    elif callable(explainer):
        takes_targets = _takes_targets(explainer)

        def function(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
            return explainer(x, t) if takes_targets else explainer(x)
    else:
        raise ValueError(
            f"explainer must be an interpret Explainer or a callable images -> maps, got {type(explainer).__name__}"
        )
    parts = []
    size = (int(images.shape[-2]), int(images.shape[-1]))
    for part in chunks(images.shape[0], batch_size):
        x = images[part]
        t = None if targets is None else targets[part]
        parts.append(as_maps(function(x, t), x.shape[0], size, name="the explainer's maps").to(images.device))
    return torch.cat(parts)


def pixel_std(
    model: nn.Module | None, channels: int, std: Sequence[float] | None, device: torch.device
) -> torch.Tensor:
    """Per-channel std ``(1, C, 1, 1)`` of the input normalisation: given, else the model's, else ones."""
    if std is None and model is not None:
        normalization = resolve_normalization(model)
        if normalization is not None and len(normalization[1]) == channels:
            std = normalization[1]
    if std is None:
        return torch.ones(1, channels, 1, 1, device=device)
    values = [float(s) for s in std]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or any(v <= 0 for v in values):
        raise ValueError(f"std must hold {channels} positive values (one per channel), got {list(std)}")
    return torch.tensor(values, device=device).view(1, channels, 1, 1)
