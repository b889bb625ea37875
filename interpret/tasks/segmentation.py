"""Explanations for semantic segmentation models (logits ``(B, K, H, W)``).

A segmentation model has no single class score to explain. :class:`~interpret.targets.RegionTarget`
(formerly ``SegmentationScore``) turns it
into one: the **sum of the class-``k`` logits over a region** of pixels, the region being a given
mask or the pixels the model itself labels ``k`` on the clean image (computed once and then held
fixed, so that every input an explainer feeds in, such as the scaled images of Integrated
Gradients, is scored on the same pixels). The wrapper returns ``(B, K)`` "logits" (column ``j`` is
the sum of class ``j``'s logits over the region), so every classification explainer of
:mod:`interpret` (GradCAM, GradCAM++, Integrated Gradients, SmoothGrad...) works unchanged.
:func:`explain_segmentation` does this and adds the per-pixel entropy of the predicted class
distribution, a map of where the model is unsure (object boundaries, ambiguous regions).

Detections: :mod:`interpret.tasks.detection` (:func:`~interpret.tasks.detection.explain_detection`) explains
one detection at a time, the same way: the scalar is that box's class logit at the proposal or
anchor it came from, held fixed for every input the explainer feeds in.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interpret.methods.base import Explainer
from interpret.model_state import frozen_eval
from interpret.layers import default_target_layer, model_device, model_dtype, resolve_layer
from interpret.targets import RegionTarget, SegmentationScore, check_segmentation_logits

__all__ = ["RegionTarget", "SegmentationExplanation", "SegmentationScore", "explain_segmentation", "pixel_entropy"]


def pixel_entropy(logits: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Entropy ``-sum_k p_k log p_k`` of the softmax over classes at each pixel, ``(B, H, W)``.

    Args:
        logits: ``(B, K, H, W)``.
        normalize: divide by ``log K`` so the map lies in [0, 1] (1 = all classes equally likely).
    """
    log_p = torch.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    k = logits.shape[1]
    return entropy / math.log(k) if normalize and k > 1 else entropy


@dataclass(frozen=True)
class SegmentationExplanation:
    """What :func:`explain_segmentation` returns (one image: no batch dimension; a batch: ``B`` first).

    Attributes:
        heatmap: the explanation in [0, 1], ``(H, W)``, at the image's resolution.
        entropy: normalised per-pixel entropy of the prediction in [0, 1], ``(H, W)`` at the logits' resolution.
        region: bool ``(H, W)``: the pixels whose class logits were summed.
        prediction: ``(H, W)`` the predicted class of each pixel.
        score: the summed class logit over the region (a float, or ``(B,)``).
    """

    heatmap: torch.Tensor
    entropy: torch.Tensor
    region: torch.Tensor
    prediction: torch.Tensor
    score: torch.Tensor | float


def explain_segmentation(
    model: nn.Module,
    image: torch.Tensor,
    target_class: int,
    mask: torch.Tensor | None = None,
    *,
    method: str | type[Explainer] = "gradcam",
    target_layer: str | nn.Module | None = None,
    **method_kwargs: Any,
) -> SegmentationExplanation:
    """Explain the ``target_class`` segment of a segmentation model's output.

    Args:
        model: returns ``(B, K, H, W)`` logits; left as it was found.
        image: a ``(C, H, W)`` tensor or a ``(B, C, H, W)`` batch (normalised model inputs).
        target_class: the class ``k`` whose logits are summed.
        mask: bool ``(H, W)`` or ``(B, H, W)`` pixels to explain; None for the pixels the model
            predicts as ``target_class`` (on the clean image).
        method: a registry name (``"gradcam"``, ``"gradcam++"``, ``"integrated_gradients"``, ...).
        target_layer: for CAM methods, a ``named_modules()`` name of ``model`` (or the module);
            default: the automatic choice on ``model`` (its last ``nn.Conv2d`` for a plain model:
            usually better to name the last feature layer before the classifier).
        **method_kwargs: passed to the method (e.g. ``steps``, ``baseline``).

    Returns:
        the heatmap, the entropy map, the region used, the prediction and the score.

    Raises:
        ValueError: logits that are not ``(B, K, H, W)``, a class out of range, a mask of the wrong shape.
    """
    from interpret.methods.registry import get_explainer  # the registry imports every method

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or not image.is_floating_point():
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float (C, H, W) tensor or a (B, C, H, W) batch, got {shape}")
    single = image.ndim == 3
    with torch.inference_mode(False):
        batch = (image.unsqueeze(0) if single else image).detach().to(
            device=model_device(model), dtype=model_dtype(model), copy=True
        )
    b = batch.shape[0]
    with frozen_eval(model), torch.no_grad():
        logits = check_segmentation_logits(model(batch), b)
    k, h, w = logits.shape[1:]
    if isinstance(target_class, bool) or not isinstance(target_class, int) or not 0 <= target_class < k:
        raise ValueError(f"target_class must be an int from 0 to {k - 1} (the model has {k} classes), got {target_class!r}")
    prediction = logits.argmax(dim=1)
    if mask is None:
        region = prediction == target_class
    else:
        region = torch.as_tensor(mask, device=batch.device)
        if region.ndim == 2:
            region = region.expand(b, -1, -1)
        if region.ndim != 3 or region.shape[0] != b or tuple(region.shape[-2:]) != (h, w):
            raise ValueError(
                f"mask must be (H, W) or (B, H, W) with (H, W) = ({h}, {w}) like the logits, got {tuple(region.shape)}"
            )
        region = region > 0 if region.dtype != torch.bool else region
    empty = ~region.flatten(1).any(dim=1)
    if bool(empty.any()):
        warnings.warn(
            f"explain_segmentation: no pixel of class {target_class} in the region of "
            f"{int(empty.sum())} image(s) ({'predicted' if mask is None else 'given'} mask is empty); "
            "their heatmaps are zero",
            stacklevel=2,
        )
    kwargs = dict(method_kwargs)
    name = method if isinstance(method, str) else getattr(method, "method_name", "")
    if name.lower().replace("_", "").startswith("gradcam"):
        _, layer = resolve_layer(model, target_layer) if target_layer is not None else default_target_layer(model)
        kwargs["target_layer"] = layer
    elif target_layer is not None:
        raise ValueError(f"target_layer is only for CAM methods (gradcam, gradcam++), not {name!r}")
    maps = []
    for index in range(b):  # one region per image: each image gets its own wrapper
        wrapper = RegionTarget(model, region[index])
        explainer = get_explainer(method, wrapper, **kwargs) if isinstance(method, str) else method(wrapper, **kwargs)
        maps.append(explainer.explain(batch[index : index + 1], target_class=target_class))
    heatmap = torch.cat(maps)
    with torch.no_grad():
        score = (logits[:, target_class] * region).sum(dim=(1, 2)).float()
    heatmap = torch.where(empty.view(-1, 1, 1).to(heatmap.device), torch.zeros_like(heatmap), heatmap)
    entropy = pixel_entropy(logits)
    out = SegmentationExplanation(
        heatmap=heatmap.detach().cpu(),
        entropy=entropy.detach().cpu(),
        region=region.detach().cpu(),
        prediction=prediction.detach().cpu(),
        score=score.detach().cpu(),
    )
    if single:
        out = SegmentationExplanation(
            out.heatmap[0], out.entropy[0], out.region[0], out.prediction[0], float(out.score[0])
        )
    return out
