"""Localisation against boxes: the pointing game of a detection's map against its box.

A detection's heatmap *points at* its box when the map's maximum lies inside the box, within
TorchRay's tolerance (15 px at 224 px, scaled by ``min(H, W) / 224``, as
:func:`interpret.metrics.pointing_game`, which does the scoring: a box is turned into the mask of
the pixels it covers). :func:`random_box_pointing_game` scores uniform random maps against the
same boxes: the chance level a method must beat (about the share of the image within tolerance of
the box). :func:`pointing_game_on_boxes` scores explanation methods on a detector's own detections
over a set of images, beside that random baseline (``explain.py metrics=true`` on a detection run).
:func:`match_truth` pairs each detection with the ground-truth box it overlaps most (IoU >= 0.5):
the box its map is scored against while a detector trains (:mod:`interpret.metrics.training`).

Boxes are ``xyxy`` in pixels of the maps' own size, continuous coordinates (pixel ``(y, x)``
covers ``[x, x+1) x [y, y+1)``); a pixel belongs to a box when it overlaps it. A box with no area
or lying outside the image has no pixel: it is excluded (NaN) and counted, never scored as a hit.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from interpret.metrics.baselines import random_map
from interpret.metrics.evaluate import bootstrap_interval
from interpret.metrics.localisation import REFERENCE_SIZE, REFERENCE_TOLERANCE, LocalisationResult, pointing_game

__all__ = [
    "box_masks",
    "box_pointing_game",
    "match_truth",
    "pointing_game_on_boxes",
    "random_box_pointing_game",
    "true_positives",
]


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
            (e.g. :attr:`interpret.tasks.detection.DetectionExplanation.maps`).
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


def true_positives(result: Any, target: Mapping[str, torch.Tensor] | None, iou: float = 0.5) -> torch.Tensor:
    """Which detections match a ground-truth box of their own class at IoU >= ``iou``.

    Args:
        result: detections with ``boxes`` ``(N, 4)`` and ``labels`` ``(N,)`` (a ``DetectionExplanation``).
        target: the ground truth, ``{"boxes": (M, 4), "labels": (M,)}``; None: no detection matches.
        iou: the overlap a match needs.

    Returns:
        bool ``(N,)``.
    """
    from torchvision.ops import box_iou

    matched = torch.zeros(len(result), dtype=torch.bool)
    if target is None or len(result) == 0 or len(target["boxes"]) == 0:
        return matched
    overlap = box_iou(result.boxes.float(), target["boxes"].float())
    same = result.labels.view(-1, 1) == target["labels"].view(1, -1)
    return ((overlap >= iou) & same).any(dim=1)


def match_truth(boxes: Any, truth: Any, iou: float = 0.5) -> torch.Tensor:
    """The ground-truth box each detection box is matched to: the one it overlaps most, class-agnostic.

    A detection of the wrong class on a true object still has that object as its box: its map is
    scored against it (the question is where the map points, not whether the class is right).

    Args:
        boxes: ``(N, 4)`` xyxy detection boxes.
        truth: ``(M, 4)`` xyxy ground-truth boxes in the same pixels.
        iou: the least overlap (IoU) of a match.

    Returns:
        int64 ``(N,)``: the index of the matched ground-truth box, -1 for none (no box reaches ``iou``).
    """
    from torchvision.ops import box_iou

    boxes, truth = (_boxes(torch.as_tensor(b).reshape(-1, 4)) for b in (boxes, truth))
    if boxes.shape[0] == 0 or truth.shape[0] == 0:
        return torch.full((boxes.shape[0],), -1, dtype=torch.long)
    best, index = box_iou(boxes, truth).max(dim=1)
    return torch.where(best >= iou, index, torch.full_like(index, -1))


def _explain_quietly(model: nn.Module, image: Any, method: str, threshold: float, max_detections: int,
                     kwargs: Mapping[str, Any]) -> Any:
    from interpret import explain_detection  # the detection task imports the metrics package

    with warnings.catch_warnings():  # "no detection above the threshold": the image just has none
        warnings.simplefilter("ignore", UserWarning)
        return explain_detection(model, image, method=method, detection_threshold=threshold,
                                 max_detections=max_detections, **kwargs)


def pointing_game_on_boxes(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    methods: Sequence[str],
    method_kwargs: Mapping[str, Mapping[str, Any]],
    threshold: float,
    max_detections: int,
    seed: int = 0,
    n_bootstrap: int = 1000,
    targets: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Pointing game on boxes of each method and of a random map over ``images``.

    ``box_pointing_game`` scores every detection (score >= ``threshold``); with ``targets``,
    ``box_pointing_game_tp`` scores only the true positives (a ground-truth box of the detection's
    class at IoU >= 0.5): a map that explains a *misclassified* box's class logit rightly points at
    an object of that class elsewhere, which the first counts as a miss.

    Args:
        model: a detector ``interpret.explain_detection`` takes.
        images: ``(C, H, W)`` pixel tensors in [0, 1].
        methods: the methods to score; the random baseline uses the first one's detections.
        method_kwargs: per method, the keywords of ``explain_detection`` (e.g. ``target_layer``).
        threshold: the detections scored have at least this score.
        max_detections: at most this many per image (the highest scores).
        seed: seed of the random maps (image ``i`` uses ``seed + i``) and of the bootstrap.
        n_bootstrap: resamples of the 95% interval.
        targets: the ground truth of each image, for ``box_pointing_game_tp``.

    Returns:
        the metrics.csv rows (method, metric, direction, mean, ci_low, ci_high, n, excluded,
        baseline) and the seconds each method took.
    """
    if not methods:
        raise ValueError("methods is empty; give at least one method to score")
    hits: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    positives: list[torch.Tensor] = []
    chance: list[torch.Tensor] = []
    seconds: dict[str, float] = {}
    for method in methods:
        started = time.perf_counter()
        for index, image in enumerate(images):
            result = _explain_quietly(model, image, method, threshold, max_detections, method_kwargs.get(method, {}))
            if len(result) == 0:
                continue
            hits[method].append(box_pointing_game(result.maps, result.boxes).scores)
            if method == methods[0]:  # the same detections for every method: one random baseline
                positives.append(true_positives(result, targets[index] if targets is not None else None))
                size = (int(result.maps.shape[-2]), int(result.maps.shape[-1]))
                chance.append(random_box_pointing_game(result.boxes, size, seed=seed + index).scores)
        seconds[method] = round(time.perf_counter() - started, 4)
    metrics = ["box_pointing_game"] + (["box_pointing_game_tp"] if targets is not None else [])
    tp_mask = torch.cat(positives) if positives else torch.zeros(0, dtype=torch.bool)
    rows = []
    for name, values, baseline in [*((m, hits[m], False) for m in methods), ("random", chance, True)]:
        scores = torch.cat(values) if values else torch.zeros(0)
        for metric in metrics:
            chosen = scores if metric == "box_pointing_game" else scores[tp_mask]
            summary = bootstrap_interval(chosen, n_bootstrap=n_bootstrap, seed=seed)
            rows.append({"method": name, "metric": metric, "direction": "higher", "mean": summary.mean,
                         "ci_low": summary.low, "ci_high": summary.high, "n": summary.n, "excluded": summary.excluded,
                         "baseline": baseline})
    return rows, seconds
