"""Localisation against ground-truth object masks: pointing game, energy in the mask, IoU.

- **Pointing game** (Zhang et al. 2016, TorchRay's protocol): a hit when the map's maximum lies
  within ``tolerance`` pixels (Euclidean) of a mask pixel. The tolerance is 15 px at 224 px and
  scales with the image: ``tolerance * min(H, W) / 224`` (about 2 px at 32 px).
- **Energy in mask** (the "energy-based pointing game" of Score-CAM): the share of the map's
  positive mass that falls inside the mask.
- **IoU**: the map min-max normalised per image, thresholded at ``threshold``, against the mask.

An image whose mask is empty has no object to point at: it is *excluded* (its score is NaN) and
counted in ``excluded``, never scored as a hit (Quantus counts such images as hits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interpret.methods.base import normalize_maps
from interpret.metrics._inputs import as_maps, as_masks

__all__ = ["LocalisationResult", "energy_in_mask", "localisation", "mask_iou", "pointing_game"]

#: TorchRay's pointing-game tolerance, in pixels at 224 x 224
REFERENCE_TOLERANCE = 15.0
REFERENCE_SIZE = 224


@dataclass(frozen=True)
class LocalisationResult:
    """Per-image scores of one localisation metric.

    Attributes:
        scores: float32 ``(B,)``; NaN for excluded images (empty masks).
        excluded: how many images were excluded.
    """

    scores: torch.Tensor
    excluded: int

    @property
    def mean(self) -> float:
        """The mean over the images that were scored (NaN when none was)."""
        valid = self.scores[~torch.isnan(self.scores)]
        return float(valid.mean()) if valid.numel() else float("nan")


def _prepare(maps: torch.Tensor, masks: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4):
        raise ValueError(f"maps must be a (B, H, W) tensor, got {getattr(maps, 'shape', type(maps).__name__)}")
    b, h, w = maps.shape[0], maps.shape[-2], maps.shape[-1]
    saliency = as_maps(maps, b, (h, w)).cpu()
    truth = as_masks(masks, b, (h, w))
    empty = ~truth.flatten(1).any(dim=1)
    return saliency, truth, empty


def _finish(scores: torch.Tensor, empty: torch.Tensor) -> LocalisationResult:
    scores = torch.where(empty, torch.full_like(scores, float("nan")), scores.float())
    return LocalisationResult(scores, int(empty.sum()))


def pointing_game(
    model: nn.Module | None,
    images: torch.Tensor | None,
    maps: torch.Tensor,
    targets: torch.Tensor | None,
    masks: Any,
    *,
    tolerance: float = REFERENCE_TOLERANCE,
    reference_size: int = REFERENCE_SIZE,
) -> LocalisationResult:
    """Pointing-game hits (1.0 or 0.0) per image.

    Args:
        model, images, targets: unused (the common metric signature); may be None.
        maps: ``(B, H, W)`` saliency.
        masks: ``(B, H, W)`` ground-truth object masks (bool or 0/1).
        tolerance: pixels at ``reference_size``; the tolerance used is
            ``tolerance * min(H, W) / reference_size``. 0 asks for the maximum to be inside the mask.
        reference_size: the image size ``tolerance`` refers to.

    Returns:
        hits in ``scores`` (NaN for empty masks) and the number of excluded images.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    saliency, truth, empty = _prepare(maps, masks)
    b, h, w = saliency.shape
    radius = float(tolerance) * min(h, w) / float(reference_size)
    peak = saliency.flatten(1).argmax(dim=1)
    py, px = (peak // w).float(), (peak % w).float()
    yy = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    near = (yy - py.view(b, 1, 1)) ** 2 + (xx - px.view(b, 1, 1)) ** 2 <= radius**2 + 1e-6
    hits = (near & truth).flatten(1).any(dim=1).float()
    return _finish(hits, empty)


def energy_in_mask(
    model: nn.Module | None,
    images: torch.Tensor | None,
    maps: torch.Tensor,
    targets: torch.Tensor | None,
    masks: Any,
) -> LocalisationResult:
    """Share of the map's positive mass inside the mask, per image (0 for an all-zero map)."""
    saliency, truth, empty = _prepare(maps, masks)
    positive = saliency.clamp(min=0).flatten(1)
    total = positive.sum(dim=1)
    inside = (positive * truth.flatten(1)).sum(dim=1)
    share = torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)), 0.0)
    return _finish(share, empty)


def mask_iou(
    model: nn.Module | None,
    images: torch.Tensor | None,
    maps: torch.Tensor,
    targets: torch.Tensor | None,
    masks: Any,
    *,
    threshold: float = 0.5,
) -> LocalisationResult:
    """IoU of ``normalize_maps(maps) >= threshold`` with the mask, per image."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1] (of each map's min-max range), got {threshold!r}")
    saliency, truth, empty = _prepare(maps, masks)
    normalised = normalize_maps(saliency)
    region = normalised >= threshold
    # an all-zero (constant) map selects nothing rather than everything
    region &= normalised.flatten(1).amax(dim=1).view(-1, 1, 1) > 0
    intersection = (region & truth).flatten(1).sum(dim=1).float()
    union = (region | truth).flatten(1).sum(dim=1).float()
    return _finish(intersection / union.clamp(min=1), empty)


def localisation(
    model: nn.Module | None,
    images: torch.Tensor | None,
    maps: torch.Tensor,
    targets: torch.Tensor | None,
    masks: Any,
    *,
    tolerance: float = REFERENCE_TOLERANCE,
    threshold: float = 0.5,
) -> dict[str, LocalisationResult]:
    """All three localisation metrics: ``{"pointing_game", "energy_in_mask", "iou"}``."""
    return {
        "pointing_game": pointing_game(model, images, maps, targets, masks, tolerance=tolerance),
        "energy_in_mask": energy_in_mask(model, images, maps, targets, masks),
        "iou": mask_iou(model, images, maps, targets, masks, threshold=threshold),
    }
