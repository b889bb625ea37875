"""What is explained: small modules that turn a model's output into the ``(B, K)`` scores an
explainer reads, column ``j`` being explained with ``target_class=j``.

- :class:`ClassTarget`: a classifier's own logits (the identity: ``target_class`` is the class).
- :class:`DetectionTarget` (formerly ``DetectionScore``): one column per detection, its class
  logit read at the proposal or anchor the box came from, held fixed for every input.
- :class:`RegionTarget` (formerly ``SegmentationScore``): a segmentation model's class logits
  summed over a fixed region of pixels.

Every explainer of :mod:`interpret` works on any of them unchanged (the pytorch-grad-cam idea:
one method, many tasks, through a small target).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from interpret.detectors import MODEL_HELP, detector_family

__all__ = [
    "ClassTarget",
    "DetectionScore",
    "DetectionTarget",
    "RegionTarget",
    "SegmentationScore",
    "check_segmentation_logits",
]


class ClassTarget(nn.Module):
    """A classifier's logits as they are: ``forward(x)[b, k]`` is class ``k``'s logit on image ``b``.

    Args:
        model: returns ``(B, K)`` logits.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DetectionTarget(nn.Module):
    """A detector seen as a classifier over its detections: ``forward(x)[b, j]`` is detection ``j``'s
    class logit on image ``b``, with the proposal/anchor of the detection fixed.

    Every explainer of :mod:`interpret` then explains detection ``j`` with ``target_class=j``.

    Args:
        detector: a torchvision detector (eval mode is the caller's business).
        labels: ``(N,)`` the detections' classes.
        sources: ``(N,)`` their anchor/location indices (one-stage) or proposal indices (two-stage).
        proposals: two-stage: the ``(P, 4)`` proposals of the clean image, in the detector's
            resized coordinates (:attr:`~interpret.tasks.detection_replay.DetectorOutput.proposals`); the detections' own are pooled
            for every input.
    """

    def __init__(
        self,
        detector: nn.Module,
        labels: torch.Tensor,
        sources: torch.Tensor,
        proposals: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        family = detector_family(detector)
        if family is None:
            raise TypeError(f"{MODEL_HELP}; got {type(detector).__name__}")
        if family == "two_stage" and proposals is None:
            raise ValueError("a two-stage detector needs the proposals the detections came from")
        self.family = family
        self.detector = detector
        self.register_buffer("labels", labels.detach().long().clone(), persistent=False)
        self.register_buffer("sources", sources.detach().long().clone(), persistent=False)
        boxes = proposals.detach()[self.sources] if proposals is not None else None
        self.register_buffer("boxes", boxes, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detector = self.detector
        images, _ = detector.transform(list(x))
        features = detector.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        count, batch = self.labels.shape[0], x.shape[0]
        if self.family == "two_stage":
            heads = detector.roi_heads
            pooled = heads.box_roi_pool(features, [self.boxes] * batch, images.image_sizes)
            class_logits, _ = heads.box_predictor(heads.box_head(pooled))
            return class_logits.view(batch, count, -1)[:, torch.arange(count, device=x.device), self.labels]
        cls_logits = detector.head.classification_head(list(features.values()))
        return cls_logits[:, self.sources, self.labels]


#: the former name of :class:`DetectionTarget`
DetectionScore = DetectionTarget


def check_segmentation_logits(logits: Any, batch: int) -> torch.Tensor:
    """``logits`` when they are a ``(B, K, H, W)`` tensor with ``B = batch``, else a ValueError."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[0] != batch:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"a segmentation model must return logits of shape (B, K, H, W) with B = {batch}, got {shape}")
    return logits


class RegionTarget(nn.Module):
    """A segmentation model seen as a classifier: summed class logits over a fixed region.

    ``forward(x)[b, j] = sum_{(u, v) in region_b} logits(x)[b, j, u, v]``.

    Args:
        model: returns ``(B, K, H, W)`` logits.
        region: bool ``(H, W)`` pixels to sum over, at the logits' resolution; the same region
            scores every input of a batch (an explainer's scaled or noisy copies of one image).
    """

    def __init__(self, model: nn.Module, region: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("region", region.bool(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = check_segmentation_logits(self.model(x), x.shape[0])
        if tuple(self.region.shape) != tuple(logits.shape[-2:]):
            raise ValueError(
                f"the region is {tuple(self.region.shape)} but the logits are {tuple(logits.shape[-2:])}"
            )
        region = self.region.expand(x.shape[0], -1, -1)
        return (logits * region.unsqueeze(1).to(logits.dtype)).sum(dim=(2, 3))


#: the former name of :class:`RegionTarget`
SegmentationScore = RegionTarget
