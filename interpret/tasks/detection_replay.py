"""Run a torchvision detector step by step and keep where each final detection came from.

torchvision's postprocessing (score threshold, top-k, NMS) does not say which proposal or anchor a
final box came from. :func:`detect_with_sources` runs the detector's own modules step by step and
repeats its postprocessing with the same operations while carrying those indices along; every call
also runs the detector's own ``postprocess_detections`` on the same outputs and checks that both
agree exactly (so an unexpected torchvision change fails loudly instead of explaining the wrong box).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from interpret.detectors import MODEL_HELP, detector_family

__all__ = ["DetectorOutput", "detect_with_sources"]


@dataclass
class DetectorOutput:
    """One decomposed forward pass of a detector, with the origin of every final detection.

    Attributes:
        boxes: ``(M, 4)`` xyxy in the input image's pixels (as ``model(image)`` returns them).
        scores: ``(M,)`` the detector's scores (softmax, sigmoid or FCOS' geometric mean).
        labels: ``(M,)`` class indices.
        sources: ``(M,)`` the proposal (two-stage) or anchor/location (one-stage) each came from.
        logits_of: ``logits_of(index)`` gives the explained class logits of the detections
            ``index`` (a long tensor), attached to the autograd graph when the forward ran with
            gradients.
        proposals: two-stage only: ``(P, 4)`` proposals in the detector's resized coordinates.
        image_size: the input's ``(H, W)``; ``resized``: the size the detector saw (before padding);
        padded: the padded tensor's ``(H, W)`` (what the feature maps cover).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    sources: torch.Tensor
    logits_of: Callable[[torch.Tensor], torch.Tensor]
    proposals: torch.Tensor | None
    image_size: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]


def _mismatch(family: str) -> RuntimeError:
    import torchvision

    return RuntimeError(
        f"explain_detection: the detections re-derived with their {family} sources differ from the detector's own "
        f"postprocess_detections (torchvision {torchvision.__version__}); this torchvision version is not supported"
    )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


def _two_stage(detector: nn.Module, images: Any, features: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    from torchvision.ops import boxes as box_ops

    heads = detector.roi_heads
    image_shape = images.image_sizes[0]
    with torch.no_grad():  # every proposal through the box head: detection only, no graph
        proposals, _ = detector.rpn(images, features)
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, images.image_sizes))
        logits, regression = heads.box_predictor(box_features)
        num_classes = logits.shape[-1]
        boxes = box_ops.clip_boxes_to_image(heads.box_coder.decode(regression, proposals), image_shape)
        scores = F.softmax(logits, -1)
        labels = torch.arange(num_classes, device=logits.device).view(1, -1).expand_as(scores)
        origin = torch.arange(scores.shape[0], device=logits.device).view(-1, 1).expand_as(scores)
        boxes, scores, labels, origin = boxes[:, 1:], scores[:, 1:], labels[:, 1:], origin[:, 1:]
        boxes, scores = boxes.reshape(-1, 4), scores.reshape(-1)
        labels, origin = labels.reshape(-1), origin.reshape(-1)
        inds = torch.where(scores > heads.score_thresh)[0]
        boxes, scores, labels, origin = boxes[inds], scores[inds], labels[inds], origin[inds]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels, origin = boxes[keep], scores[keep], labels[keep], origin[keep]
        keep = box_ops.batched_nms(boxes, scores, labels, heads.nms_thresh)[: heads.detections_per_img]
        boxes, scores, labels, origin = boxes[keep], scores[keep], labels[keep], origin[keep]
        own_boxes, own_scores, own_labels = heads.postprocess_detections(logits, regression, proposals, images.image_sizes)
        if not (_same(boxes, own_boxes[0]) and _same(scores, own_scores[0]) and _same(labels, own_labels[0])):
            raise _mismatch("two-stage")
    fixed = proposals[0].detach()

    def explained(index: torch.Tensor) -> torch.Tensor:
        # only the chosen detections' proposals go through the box head again, with the graph:
        # a backward then costs the rows explained, not every proposal
        pooled = heads.box_roi_pool(features, [fixed[origin[index]]], images.image_sizes)
        class_logits, _ = heads.box_predictor(heads.box_head(pooled))
        return class_logits[torch.arange(index.numel(), device=class_logits.device), labels[index]]

    return boxes, scores, labels, origin, explained, fixed


def _split(head_outputs: dict[str, torch.Tensor], anchors: list[torch.Tensor], counts: list[int]) -> tuple[Any, Any]:
    split = {k: list(v.detach().split(counts, dim=1)) for k, v in head_outputs.items()}
    return split, [list(a.split(counts)) for a in anchors]


def _one_stage_levels(
    detector: nn.Module, family: str, split: dict[str, list[torch.Tensor]], anchors: list[torch.Tensor], image_shape: Any
) -> tuple[torch.Tensor, ...]:
    """RetinaNet's / FCOS' postprocess_detections for image 0, keeping each candidate's anchor index."""
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import boxes as box_ops

    all_boxes, all_scores, all_labels, all_origin = [], [], [], []
    offset = 0
    for level, anchors_per_level in enumerate(anchors):
        logits_per_level = split["cls_logits"][level][0]
        regression_per_level = split["bbox_regression"][level][0]
        num_classes = logits_per_level.shape[-1]
        if family == "fcos":
            ctrness = split["bbox_ctrness"][level][0]
            scores_per_level = torch.sqrt(torch.sigmoid(logits_per_level) * torch.sigmoid(ctrness)).flatten()
        else:
            scores_per_level = torch.sigmoid(logits_per_level).flatten()
        keep_idxs = scores_per_level > detector.score_thresh
        scores_per_level = scores_per_level[keep_idxs]
        topk_idxs = torch.where(keep_idxs)[0]
        num_topk = det_utils._topk_min(topk_idxs, detector.topk_candidates, 0)
        scores_per_level, idxs = scores_per_level.topk(num_topk)
        topk_idxs = topk_idxs[idxs]
        anchor_idxs = torch.div(topk_idxs, num_classes, rounding_mode="floor")
        labels_per_level = topk_idxs % num_classes
        if family == "fcos":
            boxes_per_level = detector.box_coder.decode(regression_per_level[anchor_idxs], anchors_per_level[anchor_idxs])
        else:
            boxes_per_level = detector.box_coder.decode_single(
                regression_per_level[anchor_idxs], anchors_per_level[anchor_idxs]
            )
        boxes_per_level = box_ops.clip_boxes_to_image(boxes_per_level, image_shape)
        all_boxes.append(boxes_per_level)
        all_scores.append(scores_per_level)
        all_labels.append(labels_per_level)
        all_origin.append(anchor_idxs + offset)
        offset += anchors_per_level.shape[0]
    boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
    labels, origin = torch.cat(all_labels), torch.cat(all_origin)
    keep = box_ops.batched_nms(boxes, scores, labels, detector.nms_thresh)[: detector.detections_per_img]
    return boxes[keep], scores[keep], labels[keep], origin[keep]


def _one_stage(detector: nn.Module, family: str, images: Any, features: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import boxes as box_ops

    feature_list = list(features.values())
    head_outputs = detector.head(feature_list)
    anchors = detector.anchor_generator(images, feature_list)
    image_shape = images.image_sizes[0]
    with torch.no_grad():
        if family == "ssd":
            regression = head_outputs["bbox_regression"].detach()[0]
            scores_all = F.softmax(head_outputs["cls_logits"].detach(), dim=-1)[0]
            decoded = box_ops.clip_boxes_to_image(detector.box_coder.decode_single(regression, anchors[0]), image_shape)
            parts: list[list[torch.Tensor]] = [[], [], [], []]
            for label in range(1, scores_all.shape[-1]):
                score = scores_all[:, label]
                keep_idxs = score > detector.score_thresh
                where = torch.where(keep_idxs)[0]
                score, box = score[keep_idxs], decoded[keep_idxs]
                num_topk = det_utils._topk_min(score, detector.topk_candidates, 0)
                score, idxs = score.topk(num_topk)
                parts[0].append(box[idxs])
                parts[1].append(score)
                parts[2].append(torch.full_like(score, fill_value=label, dtype=torch.int64))
                parts[3].append(where[idxs])
            boxes, scores, labels, origin = (torch.cat(p) for p in parts)
            keep = box_ops.batched_nms(boxes, scores, labels, detector.nms_thresh)[: detector.detections_per_img]
            boxes, scores, labels, origin = boxes[keep], scores[keep], labels[keep], origin[keep]
            detached = {k: v.detach() for k, v in head_outputs.items()}
            own = detector.postprocess_detections(detached, anchors, images.image_sizes)[0]
        else:
            counts = [x.size(2) * x.size(3) for x in feature_list]
            if family == "retinanet":
                per_location = head_outputs["cls_logits"].size(1) // sum(counts)
                counts = [c * per_location for c in counts]
            split, split_anchors = _split(head_outputs, anchors, counts)
            boxes, scores, labels, origin = _one_stage_levels(detector, family, split, split_anchors[0], image_shape)
            own = detector.postprocess_detections(split, split_anchors, images.image_sizes)[0]
        if not (_same(boxes, own["boxes"]) and _same(scores, own["scores"]) and _same(labels, own["labels"])):
            raise _mismatch(family)
    cls_logits = head_outputs["cls_logits"]

    def explained(index: torch.Tensor) -> torch.Tensor:
        return cls_logits[0, origin[index], labels[index]]

    return boxes, scores, labels, origin, explained, None


def detect_with_sources(detector: nn.Module, image: torch.Tensor) -> DetectorOutput:
    """Run ``detector`` on one image step by step and keep where each final detection came from.

    Equal to ``detector([image])[0]`` (boxes, scores, labels) in eval mode; the caller sets the
    mode and the grad mode (with gradients on, ``logits_of`` is attached to the graph).

    Args:
        detector: a torchvision GeneralizedRCNN, RetinaNet, FCOS or SSD.
        image: ``(C, H, W)`` pixels in [0, 1] (the detector normalises and resizes itself).
    """
    family = detector_family(detector)
    if family is None:
        raise TypeError(f"{MODEL_HELP}; got {type(detector).__name__}")
    original = (int(image.shape[-2]), int(image.shape[-1]))
    images, _ = detector.transform([image])
    features = detector.backbone(images.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    if family == "two_stage":
        boxes, scores, labels, origin, explained, proposals = _two_stage(detector, images, features)
    else:
        boxes, scores, labels, origin, explained, proposals = _one_stage(detector, family, images, features)
    with torch.no_grad():
        rescaled = detector.transform.postprocess([{"boxes": boxes}], images.image_sizes, [original])[0]["boxes"]
    resized = (int(images.image_sizes[0][0]), int(images.image_sizes[0][1]))
    padded = (int(images.tensors.shape[-2]), int(images.tensors.shape[-1]))
    return DetectorOutput(rescaled, scores, labels, origin, explained, proposals, original, resized, padded)
