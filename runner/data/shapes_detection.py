"""Datamodule over the generated shapes with boxes (see :func:`runner.data.shapes_generator.generate_shapes_detection`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from interpret.checks import positive_int
from runner.data.detection_datamodule import DetectionDataModule, DetectionTensorDataset
from runner.data.generated_splits import GeneratedSplits
from runner.data.shapes_generator import SHAPE_CLASSES, check_scales, generate_shapes_detection

__all__ = ["ShapesDetectionDataModule"]


class ShapesDetectionDataModule(GeneratedSplits[list[torch.Tensor]], DetectionDataModule):
    """Shapes for object detection: several objects per image, boxes from their masks, labels.

    Train, val and test sets are generated from ``seed``, ``seed + 1`` and ``seed + 2``. Batches are
    ``(list of (3, H, W) images in [0, 1], list of {"boxes", "labels"})`` (see
    :mod:`runner.data.detection_datamodule`). ``val_masks``/``test_masks`` hold each image's object masks
    (a list of bool ``(K, H, W)``), :meth:`sample_masks` the union masks of the sample images.

    Args:
        num_train, num_val, num_test: split sizes.
        num_classes: how many shape kinds (1-4) out of circle, square, triangle, cross.
        min_objects, max_objects: objects per image.
        min_scale, max_scale: object radius as a fraction of ``image_size``.
        distinct_classes: the objects of one image have different classes (``max_objects <= num_classes``).
        **kwargs: see :class:`~runner.data.ImageDataModule` (``mean``/``std`` are ignored).
    """

    def __init__(
        self,
        num_train: int = 1000,
        num_val: int = 200,
        num_test: int = 200,
        num_classes: int = 4,
        min_objects: int = 1,
        max_objects: int = 3,
        min_scale: float = 0.12,
        max_scale: float = 0.22,
        distinct_classes: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("image_size", 64)
        super().__init__(**kwargs)
        self._init_splits(num_train, num_val, num_test)
        if not isinstance(num_classes, int) or not 1 <= num_classes <= len(SHAPE_CLASSES):
            raise ValueError(f"data.num_classes must be between 1 and {len(SHAPE_CLASSES)}, got {num_classes!r}")
        for name, value in (("min_objects", min_objects), ("max_objects", max_objects)):
            positive_int(value, f"data.{name}")
        if min_objects > max_objects:
            raise ValueError(f"data.min_objects={min_objects} is more than data.max_objects={max_objects}")
        check_scales(min_scale, max_scale)
        if not isinstance(distinct_classes, bool):
            raise ValueError(f"data.distinct_classes must be true or false, got {distinct_classes!r}")
        if distinct_classes and max_objects > num_classes:
            raise ValueError(
                f"data.distinct_classes=true needs data.max_objects <= data.num_classes, got {max_objects} > {num_classes}"
            )
        self.distinct_classes = distinct_classes
        self.min_objects, self.max_objects = min_objects, max_objects
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.class_names = list(SHAPE_CLASSES[:num_classes])

    def _make(self, n: int, seed: int) -> tuple[DetectionTensorDataset, list[torch.Tensor]]:
        images, boxes, labels, masks = generate_shapes_detection(
            n, self.image_size, seed, self.num_classes, self.min_objects, self.max_objects, self.min_scale, self.max_scale,
            self.distinct_classes,
        )
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
        dataset = DetectionTensorDataset(x, [torch.from_numpy(b) for b in boxes], [torch.from_numpy(lab) for lab in labels])
        return dataset, [torch.from_numpy(m) for m in masks]

    def _sample_mask_batch(self, masks: list[torch.Tensor]) -> torch.Tensor:
        """Union masks: one bool ``(H, W)`` per image, all its objects together."""
        return torch.stack([m.any(dim=0) for m in masks])
