"""Explanation metrics cheap enough to score while a model trains, and the shortcut test on them.

A callback explains a few fixed images every so often; these functions turn the maps it just made
into numbers that can be plotted over training (all plain PyTorch, no Trainer):

- ``deletion_auc``, ``insertion_auc``: RISE deletion / insertion (:mod:`.deletion_insertion`) with
  :data:`CURVE_STEPS` steps only (faithfulness; deletion lower is better, insertion higher);
- ``energy_in_mask``, ``pointing_game``: against ground-truth object masks (:mod:`.localisation`);
- ``drift``: ``1 - Spearman`` rank correlation of each image's map with its map at the previous
  scoring, averaged over the images (0: the same ranking of pixels; 1: unrelated; up to 2: reversed);
- ``concentration``: ``1 - H(p) / log(H * W)`` where ``p`` is the map's positive part scaled to sum
  1 and ``H`` its Shannon entropy, averaged over the images (0: spread evenly over the whole image;
  1: all the mass on one pixel; an all-zero map counts as spread, 0);
- ``location_agreement``: the mean Pearson correlation between the maps of *different* images
  (over all pairs), in [-1, 1]: near 0 when each map follows its own image's object, near 1 when
  the same spot lights up on every image whatever it shows (a watermark-style shortcut).

:func:`training_scores` computes any subset of them for one batch; :func:`shortcut_evidence` says
whether scores logged over training show a shortcut.

A detector has one map per detection: :func:`detection_training_scores` scores each explained
detection's map against the ground-truth box it overlaps most (IoU >= 0.5, class-agnostic,
:func:`interpret.metrics.boxes.match_truth`; a detection matching none is left out of the box
metrics): ``energy_in_mask`` is the map's energy in that box, ``pointing_game`` the hit on it.
``drift`` compares, per ground-truth box, the map of the best detection matched to it now and at
the previous scoring (:func:`truth_maps`); ``concentration`` is averaged over every explained
detection and ``location_agreement`` taken over the pairs of detections of *different* images.
Deletion and insertion are not scored on a detector (:data:`DETECTION_METRICS`): their curves read
a classifier's softmax probability of one class per image, while a detector's score is a sigmoid
read at the anchor or proposal each detection came from (``interpret.targets.DetectionTarget``),
a per-detection model that two-stage detectors can only rebuild with their proposals, which the
explanations do not keep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from interpret.metrics._inputs import as_maps
from interpret.metrics.boxes import box_masks, box_pointing_game, match_truth
from interpret.metrics.deletion_insertion import deletion_insertion
from interpret.metrics.localisation import energy_in_mask, pointing_game
from interpret.metrics.randomisation import spearman

__all__ = [
    "CURVE_STEPS",
    "DEFAULT_TRAINING_METRICS",
    "DETECTION_METRICS",
    "TRAINING_METRICS",
    "check_training_metrics",
    "concentration",
    "detection_training_scores",
    "drift",
    "location_agreement",
    "shortcut_evidence",
    "training_scores",
    "truth_maps",
]

#: every metric :func:`training_scores` knows, in the order they are logged
TRAINING_METRICS: tuple[str, ...] = (
    "deletion_auc",
    "insertion_auc",
    "energy_in_mask",
    "pointing_game",
    "drift",
    "concentration",
    "location_agreement",
)
#: the default set: all of them (the curves take ``2 * CURVE_STEPS + 1`` forward images per sample)
DEFAULT_TRAINING_METRICS: tuple[str, ...] = TRAINING_METRICS
#: points on the deletion/insertion curves minus one (RISE uses 224; a trend needs few)
CURVE_STEPS = 8
#: the metrics that need ground-truth masks
MASK_METRICS: tuple[str, ...] = ("energy_in_mask", "pointing_game")
#: the metrics :func:`detection_training_scores` scores on a detector (no deletion/insertion curves)
DETECTION_METRICS: tuple[str, ...] = ("energy_in_mask", "pointing_game", "drift", "concentration", "location_agreement")
#: the least IoU of a detection with the ground-truth box it is scored against
MATCH_IOU = 0.5


def check_training_metrics(metrics: Any, name: str = "`metrics`") -> tuple[str, ...]:
    """``metrics`` (a list of names from :data:`TRAINING_METRICS`, or ``[]``) as a tuple without repeats.

    Raises:
        ValueError: one line naming ``name`` and the allowed names.
    """
    allowed = ", ".join(TRAINING_METRICS)
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise ValueError(f"{name} must be a list of metric names ({allowed}) or [], got {metrics!r}")
    unknown = [m for m in metrics if m not in TRAINING_METRICS]
    if unknown:
        raise ValueError(f"{name} can be {allowed} (or []), got {', '.join(repr(m) for m in unknown)}")
    return tuple(dict.fromkeys(metrics))


def _flat(maps: torch.Tensor) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4):
        raise ValueError(f"maps must be a (B, H, W) tensor, got {getattr(maps, 'shape', type(maps).__name__)}")
    b, h, w = maps.shape[0], maps.shape[-2], maps.shape[-1]
    return as_maps(maps, b, (h, w)).detach().cpu().double().flatten(1)


def drift(previous: torch.Tensor, current: torch.Tensor) -> float:
    """``1 - Spearman`` rank correlation of each image's map now and before, averaged over images.

    Args:
        previous: ``(B, H, W)`` the maps of the same images at the previous scoring.
        current: ``(B, H, W)`` the maps now.

    Returns:
        A float in [0, 2]; a map constant on either side counts as uncorrelated (1).
    """
    a, b = _flat(previous), _flat(current)
    if a.shape != b.shape:
        raise ValueError(f"drift compares maps of the same images, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return float((1.0 - spearman(a, b).double()).mean())


def concentration(maps: torch.Tensor) -> float:
    """``1 - normalised Shannon entropy`` of each map's positive part, averaged over the images.

    Returns:
        A float in [0, 1]: 0 for mass spread evenly (or no positive mass), 1 for one pixel.
    """
    flat = _flat(maps).clamp(min=0)
    n = flat.shape[1]
    if n < 2:
        raise ValueError(f"concentration needs maps of at least 2 pixels, got {n}")
    total = flat.sum(dim=1, keepdim=True)
    p = flat / torch.where(total > 0, total, torch.ones_like(total))
    entropy = -torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p)).sum(dim=1)
    score = 1.0 - entropy / math.log(n)
    score = torch.where(total.squeeze(1) > 0, score, torch.zeros_like(score))
    return float(score.clamp(0.0, 1.0).mean())


def location_agreement(maps: torch.Tensor, groups: torch.Tensor | None = None) -> float:
    """Mean Pearson correlation between the maps of different images (all ``B (B - 1) / 2`` pairs).

    Args:
        maps: ``(B, H, W)``, one map per image (or per detection, with ``groups``).
        groups: ``(B,)`` the image each map belongs to (a detector's several maps per image): only
            the pairs from different images count; None: every map is its own image.

    Returns:
        A float in [-1, 1]; a constant map correlates 0 with any other; NaN for fewer than 2 maps
        (or no pair of maps from different images).
    """
    flat = _flat(maps)
    b = flat.shape[0]
    if groups is not None and tuple(torch.as_tensor(groups).shape) != (b,):
        shape = tuple(torch.as_tensor(groups).shape)
        raise ValueError(f"groups must give the image of each of the {b} maps, got shape {shape}")
    if b < 2:
        return float("nan")
    centred = flat - flat.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1, keepdim=True)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    unit = torch.where(norms > 0, centred / safe, torch.zeros_like(centred))
    corr = unit @ unit.T
    if groups is None:
        pairs = ~torch.eye(b, dtype=torch.bool)
    else:
        image = torch.as_tensor(groups).cpu().view(-1)
        pairs = image.view(-1, 1) != image.view(1, -1)
    return float(corr[pairs].mean()) if pairs.any() else float("nan")


def training_scores(
    model: nn.Module | None,
    images: torch.Tensor | None,
    maps: torch.Tensor,
    targets: torch.Tensor | None = None,
    masks: Any = None,
    *,
    metrics: Sequence[str] = DEFAULT_TRAINING_METRICS,
    previous: torch.Tensor | None = None,
    n_steps: int = CURVE_STEPS,
    batch_size: int = 64,
) -> dict[str, float]:
    """The ``metrics`` of one batch of maps, as ``{name: value}`` (those that apply only).

    Args:
        model: the classifier (deletion/insertion run it, in eval mode, without gradients; it is
            left as found); None when neither curve metric is asked for.
        images: ``(B, C, H, W)`` the model inputs the maps explain.
        maps: ``(B, H, W)`` saliency (higher = more important) at the images' size (the mask
            metrics resize it to the masks' size when they differ).
        targets: ``(B,)`` the classes explained (None: the predicted ones).
        masks: ``(B, H, W)`` ground-truth object masks; None skips ``energy_in_mask`` and ``pointing_game``.
        metrics: names from :data:`TRAINING_METRICS`.
        previous: the maps of the same images at the previous scoring; None skips ``drift`` (as
            does a different shape: other images).
        n_steps: deletion/insertion curve steps.
        batch_size: perturbed images per forward pass of the curves.

    Returns:
        Means over the images (NaN-free: a mask metric with every mask empty is left out).
    """
    wanted = check_training_metrics(metrics)
    out: dict[str, float] = {}
    if "deletion_auc" in wanted or "insertion_auc" in wanted:
        if model is None or images is None:
            raise ValueError("deletion_auc and insertion_auc need the model and the images")
        steps = min(int(n_steps), images.shape[-2] * images.shape[-1])
        curves = deletion_insertion(model, images, maps, targets, n_steps=steps, batch_size=batch_size)
        for name, mode in (("deletion_auc", "deletion"), ("insertion_auc", "insertion")):
            if name in wanted:
                out[name] = float(curves[mode].auc.mean())
    if masks is not None:
        mask_maps = maps
        if isinstance(masks, torch.Tensor) and masks.shape[-2:] != maps.shape[-2:]:
            mask_maps = torch.nn.functional.interpolate(
                maps.detach().float().cpu().reshape(maps.shape[0], 1, *maps.shape[-2:]),
                size=tuple(masks.shape[-2:]), mode="bilinear", align_corners=False,
            )[:, 0]
        for name, metric in (("energy_in_mask", energy_in_mask), ("pointing_game", pointing_game)):
            if name in wanted:
                value = metric(None, None, mask_maps, None, masks).mean
                if not math.isnan(value):
                    out[name] = value
    if "drift" in wanted and previous is not None and tuple(previous.shape) == tuple(maps.shape):
        out["drift"] = drift(previous, maps)
    if "concentration" in wanted:
        out["concentration"] = concentration(maps)
    if "location_agreement" in wanted and maps.shape[0] >= 2:
        out["location_agreement"] = location_agreement(maps)
    return {name: out[name] for name in TRAINING_METRICS if name in out}


def _detection_parts(detections: Sequence[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(boxes (N, 4), maps (N, H, W))`` on the CPU of each image's detections (with ``boxes`` and ``maps``)."""
    parts = []
    for found in detections:
        boxes, maps = getattr(found, "boxes", None), getattr(found, "maps", None)
        if not isinstance(boxes, torch.Tensor) or not isinstance(maps, torch.Tensor) or maps.ndim != 3 \
                or boxes.shape[0] != maps.shape[0]:
            raise ValueError("detections must each have boxes (N, 4) and maps (N, H, W), one map per box "
                             "(interpret.explain_detection's results)")
        parts.append((boxes.detach().float().cpu().reshape(-1, 4), maps.detach().float().cpu()))
    return parts


def truth_maps(
    detections: Sequence[Any], truth_boxes: Sequence[Any], size: tuple[int, int], *, iou: float = MATCH_IOU
) -> torch.Tensor:
    """Per ground-truth box, the map of the highest-scoring detection matched to it (what ``drift`` compares).

    Args:
        detections: per image, its explained detections (``boxes`` and ``maps``, highest score first).
        truth_boxes: per image, its ``(M_i, 4)`` xyxy ground-truth boxes in the maps' pixels.
        size: ``(H, W)`` of the maps.
        iou: the least IoU of a match (:func:`interpret.metrics.boxes.match_truth`).

    Returns:
        float ``(sum M_i, H, W)``, the images' boxes in order; NaN rows for boxes no detection matched.
    """
    if len(truth_boxes) != len(detections):
        raise ValueError(f"got the boxes of {len(truth_boxes)} images for the detections of {len(detections)}")
    rows = []
    for (boxes, maps), truth in zip(_detection_parts(detections), truth_boxes, strict=True):
        truth = torch.as_tensor(truth).reshape(-1, 4)
        out = torch.full((truth.shape[0], int(size[0]), int(size[1])), float("nan"))
        index = match_truth(boxes, truth, iou)
        for k in reversed(range(index.shape[0])):  # the highest score (first) written last: it wins
            if index[k] >= 0 and tuple(maps.shape[-2:]) == tuple(out.shape[-2:]):
                out[index[k]] = maps[k]
        rows.append(out)
    return torch.cat(rows) if rows else torch.zeros(0, int(size[0]), int(size[1]))


def detection_training_scores(
    detections: Sequence[Any],
    truth_boxes: Sequence[Any] | None = None,
    *,
    metrics: Sequence[str] = DETECTION_METRICS,
    previous: torch.Tensor | None = None,
    iou: float = MATCH_IOU,
) -> dict[str, float]:
    """The ``metrics`` of a detector's per-detection maps, as ``{name: value}`` (those that apply only).

    Args:
        detections: per image, its explained detections: ``boxes`` ``(N, 4)`` xyxy and ``maps``
            ``(N, H, W)`` at the image's size (``interpret.explain_detection``'s results).
        truth_boxes: per image, its ``(M_i, 4)`` ground-truth boxes in the same pixels; None
            skips ``energy_in_mask``, ``pointing_game`` and ``drift``.
        metrics: names from :data:`TRAINING_METRICS`; ``deletion_auc`` and ``insertion_auc`` are
            not scored on a detector (see the module's docstring).
        previous: :func:`truth_maps` of the same images at the previous scoring; None (or another
            shape: other images) skips ``drift``.
        iou: the least IoU of a detection with the ground-truth box it is scored against.

    Returns:
        ``energy_in_mask`` and ``pointing_game``: means over the detections matched to a box;
        ``drift``: over the boxes matched now and before; ``concentration``: over every detection;
        ``location_agreement``: over the pairs of detections of different images. A metric with
        nothing to score (no detection, no match) is left out.
    """
    wanted = check_training_metrics(metrics)
    parts = _detection_parts(detections)
    out: dict[str, float] = {}
    scored = [(i, maps) for i, (_, maps) in enumerate(parts) if maps.shape[0]]
    if scored:
        maps = torch.cat([m for _, m in scored])
        groups = torch.cat([torch.full((m.shape[0],), i) for i, m in scored])
        if "concentration" in wanted:
            out["concentration"] = concentration(maps)
        if "location_agreement" in wanted and len(scored) >= 2:
            out["location_agreement"] = location_agreement(maps, groups=groups)
    if truth_boxes is not None:
        if len(truth_boxes) != len(parts):
            raise ValueError(f"got the boxes of {len(truth_boxes)} images for the detections of {len(parts)}")
        matched_maps, matched_boxes = [], []
        for (boxes, maps), truth in zip(parts, truth_boxes, strict=True):
            truth = torch.as_tensor(truth).detach().float().cpu().reshape(-1, 4)
            index = match_truth(boxes, truth, iou)
            keep = index >= 0
            matched_maps.append(maps[keep])
            matched_boxes.append(truth[index[keep]])
        maps = torch.cat(matched_maps) if matched_maps else torch.zeros(0, 1, 1)
        if maps.shape[0]:
            boxes = torch.cat(matched_boxes)
            values = {
                "energy_in_mask": lambda: energy_in_mask(None, None, maps, None, box_masks(boxes, maps.shape[-2:])),
                "pointing_game": lambda: box_pointing_game(maps, boxes),
            }
            for name, metric in values.items():
                if name in wanted:
                    value = metric().mean
                    if not math.isnan(value):
                        out[name] = value
        if "drift" in wanted and previous is not None and parts:
            size = next((tuple(m.shape[-2:]) for _, m in parts if m.shape[0]), tuple(previous.shape[-2:]))
            current = truth_maps(detections, truth_boxes, size, iou=iou)
            if tuple(previous.shape) == tuple(current.shape):
                both = ~previous.flatten(1).isnan().any(dim=1) & ~current.flatten(1).isnan().any(dim=1)
                if both.any():
                    out["drift"] = drift(previous[both], current[both])
    return {name: out[name] for name in TRAINING_METRICS if name in out}


def shortcut_evidence(
    history: Sequence[dict[str, float]],
    *,
    energy_threshold: float,
    agreement_threshold: float,
    min_accuracy: float,
    accuracy_key: str = "accuracy",
) -> str | None:
    """Whether the latest scores show the explanations off the objects while the model learns.

    The evidence: the latest entry's training accuracy (under ``accuracy_key``) has risen to at
    least ``min_accuracy`` (the model has learned something, so its explanations should be on the
    objects by now), *and* its ``energy_in_mask`` is below ``energy_threshold`` or its
    ``location_agreement`` above ``agreement_threshold``. Early in training, before the accuracy
    rises, maps are off the objects on clean data too: they are no evidence.

    Args:
        history: one dict of scores per scoring, oldest first, each possibly with ``accuracy_key``.
        energy_threshold: evidence below this energy in mask.
        agreement_threshold: evidence above this location agreement.
        min_accuracy: the training accuracy from which low energy / high agreement count.
        accuracy_key: the key of the training accuracy in each entry.

    Returns:
        A one-line description of the evidence, or None (no alarm; also without an accuracy now).
    """
    if not history:
        return None
    latest = history[-1]
    accuracy = latest.get(accuracy_key)
    if accuracy is None or math.isnan(accuracy) or accuracy < min_accuracy:
        return None
    reasons = []
    energy = latest.get("energy_in_mask")
    if energy is not None and energy < energy_threshold:
        reasons.append(f"energy_in_mask {energy:.3f} < {energy_threshold:g}")
    agreement = latest.get("location_agreement")
    if agreement is not None and agreement > agreement_threshold:
        reasons.append(f"location_agreement {agreement:.3f} > {agreement_threshold:g}")
    if not reasons:
        return None
    first = next((h[accuracy_key] for h in history if accuracy_key in h and not math.isnan(h[accuracy_key])), accuracy)
    return (f"{' and '.join(reasons)} while training accuracy is {accuracy:.3f} (>= {min_accuracy:g}; "
            f"{first:.3f} at the first scoring)")
