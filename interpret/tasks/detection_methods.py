"""The two ways a detection is explained: CAMs at a layer, or an input method through a target.

- ``gradcam`` and ``gradcam++`` at a backbone layer: one forward pass serves detection and every
  map; the gradients of the N detections' scores come from one vectorised backward
  (``torch.autograd.grad(..., is_grads_batched=True)``) when the detector's operations allow it,
  else from N backward passes through the retained graph. The maths is
  :class:`~interpret.methods.gradcam.GradCAM`'s and :class:`~interpret.methods.gradcam.GradCAMPlusPlus`'s.
- ``integrated_gradients`` and ``smoothgrad`` on the input pixels, applied to
  :class:`~interpret.targets.DetectionTarget` (the N detections explained as one batch).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from interpret.checks import non_negative_number
from interpret.hooks import ActivationCapture, HookManager
from interpret.methods.base import resize_maps
from interpret.methods.gradcam import GradCAM, GradCAMPlusPlus
from interpret.targets import DetectionTarget
from interpret.tasks.detection_replay import DetectorOutput, detect_with_sources

__all__ = ["explain_cam", "explain_input", "selected"]

#: defaults for the input methods on detectors (big images: fewer scaled copies per pass)
_INPUT_METHOD_DEFAULTS: dict[str, Any] = {"internal_batch_size": 8}

Explained = tuple[DetectorOutput, torch.Tensor, torch.Tensor, torch.Tensor]


def _batched_grad(scores: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """``(N, *leaf.shape[1:])``: the gradient of each score w.r.t. ``leaf`` (batch of 1)."""
    count = scores.shape[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vmap's "no batching rule, falling back to a loop" notes
            (grads,) = torch.autograd.grad(
                scores,
                leaf,
                grad_outputs=torch.eye(count, dtype=scores.dtype, device=scores.device),
                is_grads_batched=True,
                retain_graph=True,
                allow_unused=True,
            )
        if grads is not None:
            return grads[:, 0]
        return torch.zeros((count, *leaf.shape[1:]), dtype=leaf.dtype, device=leaf.device)
    except RuntimeError:  # an operation without a vmap rule for its backward: one backward each
        rows = []
        for index in range(count):
            (grad,) = torch.autograd.grad(scores[index], leaf, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(leaf[0]) if grad is None else grad[0])
        return torch.stack(rows)


def _cam_to_image(cams: torch.Tensor, output: DetectorOutput) -> torch.Tensor:
    """Feature-grid maps ``(N, h, w)`` over the padded input -> ``(N, H, W)`` at the input's size."""
    padded = resize_maps(cams, output.padded)
    valid = padded[:, : output.resized[0], : output.resized[1]]
    return resize_maps(valid, output.image_size)


def explain_cam(
    detector: nn.Module,
    layer_name: str,
    layer: nn.Module,
    pixels: torch.Tensor,
    threshold: float,
    max_detections: int,
    method: str,
    kwargs: dict[str, Any],
) -> Explained:
    eps = kwargs.pop("eps", 0.0)
    if kwargs:
        raise ValueError(f"method {method!r} takes the keyword eps (gradcam++) for detections; got {', '.join(sorted(kwargs))}")
    if method == "gradcam" and eps:
        raise ValueError("eps applies to gradcam++ only")
    non_negative_number(eps, "eps")
    capture = ActivationCapture()
    with HookManager() as hooks:
        hooks.register_forward_hook(layer, capture)
        output = detect_with_sources(detector, pixels)
    if capture.activation is None:
        raise RuntimeError(
            f"target_layer {layer_name!r} was not called during the detector's forward pass; choose a backbone "
            "stage (see model.named_modules())"
        )
    keep = selected(output, threshold, max_detections)
    activation = capture.activation
    if activation.ndim != 4:
        raise ValueError(
            f"target_layer {layer_name!r} outputs shape {tuple(activation.shape)}; CAMs need a (1, C, h, w) feature map"
        )
    count = int(keep.numel())
    if count == 0:
        return output, keep, torch.zeros((0, *output.image_size)), torch.zeros(0)
    scores = output.logits_of(keep)
    if not scores.requires_grad:
        raise RuntimeError(f"the detection scores do not depend on target_layer {layer_name!r}; choose a backbone stage")
    grads = _batched_grad(scores, activation).float()
    acts = activation.detach().float().expand(count, -1, -1, -1)
    if method == "gradcam":
        cams = GradCAM.cam(acts, grads)
    else:
        weights = GradCAMPlusPlus.channel_weights(acts, grads, float(eps))
        cams = GradCAMPlusPlus.weighted_maps(weights, acts)
    return output, keep, _cam_to_image(cams, output), scores.detach()


def selected(output: DetectorOutput, threshold: float, max_detections: int) -> torch.Tensor:
    return torch.where(output.scores.detach() >= threshold)[0][:max_detections]


def explain_input(
    detector: nn.Module,
    pixels: torch.Tensor,
    threshold: float,
    max_detections: int,
    method: str,
    kwargs: dict[str, Any],
) -> Explained:
    from interpret.methods.registry import get_explainer

    with torch.no_grad():
        output = detect_with_sources(detector, pixels)
    keep = selected(output, threshold, max_detections)
    count = int(keep.numel())
    if count == 0:
        return output, keep, torch.zeros((0, *output.image_size)), torch.zeros(0)
    with torch.no_grad():
        logits = output.logits_of(keep)
    score = DetectionTarget(detector, output.labels[keep], output.sources[keep], output.proposals)
    options = {**_INPUT_METHOD_DEFAULTS, **kwargs}
    # the detector takes pixels in [0, 1]: pixel-space baselines need no normalisation
    identity = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": output.image_size}
    explainer = get_explainer(method, score, **identity, **options)
    batch = pixels.unsqueeze(0).expand(count, -1, -1, -1)
    maps = explainer.explain(batch, target_class=list(range(count)))
    return output, keep, maps, logits
