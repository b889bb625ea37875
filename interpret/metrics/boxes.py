"""Localisation against boxes: the pointing game of a detection's map against its box.

A detection's heatmap *points at* its box when the map's maximum lies inside the box, within
TorchRay's tolerance (15 px at 224 px, scaled by ``min(H, W) / 224``, as
:func:`interpret.metrics.pointing_game`, which does the scoring: a box is turned into the mask of
the pixels it covers). :func:`random_box_pointing_game` scores uniform random maps against the
same boxes: the chance level a method must beat (about the share of the image within tolerance of
the box).

Boxes are ``xyxy`` in pixels of the maps' own size, continuous coordinates (pixel ``(y, x)``
covers ``[x, x+1) x [y, y+1)``); a pixel belongs to a box when it overlaps it. A box with no area
or lying outside the image has no pixel: it is excluded (NaN) and counted, never scored as a hit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from interpret.metrics.baselines import random_map
from interpret.metrics.localisation import REFERENCE_SIZE, REFERENCE_TOLERANCE, LocalisationResult, pointing_game

__all__ = ["box_masks", "box_pointing_game", "random_box_pointing_game"]


def _boxes(boxes: Any) -> torch.Tensor:
    if isinstance(boxes, np.ndarray):
        boxes = torch.from_numpy(boxes)
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"boxes must be a (N, 4) xyxy tensor or array, got {type(boxes).__name__}")
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {tuple(boxes.shape)}")
    return boxes.detach().float().cpu()


def box_masks(boxes: Any, size: tuple[int, int]) -> torch.Tensor:
    """Bool ``(N, H, W)`` masks of the pixels each ``xyxy`` box overlaps.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2`` in pixels.
        size: ``(H, W)`` of the masks.
    """
    boxes = _boxes(boxes)
    h, w = int(size[0]), int(size[1])
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    yy = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    return (xx + 1 > x1) & (xx < x2) & (yy + 1 > y1) & (yy < y2)


def box_pointing_game(
    maps: torch.Tensor,
    boxes: Any,
    *,
    tolerance: float = REFERENCE_TOLERANCE,
    reference_size: int = REFERENCE_SIZE,
) -> LocalisationResult:
    """Pointing-game hits (1.0 or 0.0) of each map against its box.

    Args:
        maps: ``(N, H, W)`` saliency, ``maps[i]`` explaining the detection of ``boxes[i]``
            (e.g. :attr:`interpret.detection.DetectionExplanation.maps`).
        boxes: ``(N, 4)`` xyxy in the maps' pixels (the detection's own box, or a ground-truth box).
        tolerance: pixels at ``reference_size`` (scaled to the maps' size); 0: the maximum must be in the box.
        reference_size: the image size ``tolerance`` refers to.

    Returns:
        hits per map in ``scores`` (NaN for an empty box) and the number of excluded boxes.
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(f"maps must be a (N, H, W) tensor, got {getattr(maps, 'shape', type(maps).__name__)}")
    boxes = _boxes(boxes)
    if boxes.shape[0] != maps.shape[0]:
        raise ValueError(f"got {maps.shape[0]} maps for {boxes.shape[0]} boxes; give one box per map")
    if maps.shape[0] == 0:
        return LocalisationResult(torch.zeros(0), 0)
    masks = box_masks(boxes, (int(maps.shape[-2]), int(maps.shape[-1])))
    return pointing_game(None, None, maps, None, masks, tolerance=tolerance, reference_size=reference_size)


def random_box_pointing_game(
    boxes: Any,
    size: tuple[int, int],
    *,
    seed: int = 0,
    tolerance: float = REFERENCE_TOLERANCE,
    reference_size: int = REFERENCE_SIZE,
) -> LocalisationResult:
    """The random-map baseline of :func:`box_pointing_game`: a uniform random map per box.

    Args:
        boxes: ``(N, 4)`` xyxy in pixels of ``size``.
        size: ``(H, W)`` of the maps.
        seed: seed of the local generator (the global RNG is untouched).
        tolerance: as for :func:`box_pointing_game`.
        reference_size: as for :func:`box_pointing_game`.
    """
    boxes = _boxes(boxes)
    generator = torch.Generator().manual_seed(int(seed))
    maps = random_map(boxes.shape[0], (int(size[0]), int(size[1])), generator)
    return box_pointing_game(maps, boxes, tolerance=tolerance, reference_size=reference_size)
