"""Shapes with boxes: several objects per image, their boxes taken from their masks.

The same shapes as :mod:`runner.data.shapes` (circle, square, triangle, cross on a cluttered
background), ``min_objects`` to ``max_objects`` of them per image, never overlapping, each with
its class and the tight box around its pixel mask. Deterministic for a given ``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.data.detection import DetectionDataModule, DetectionTensorDataset
from runner.data.shapes import SHAPE_CLASSES, _background, _shape_mask

__all__ = ["ShapesDetectionDataModule", "boxes_from_masks", "generate_shapes_detection"]


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight ``xyxy`` boxes (pixel edges: ``x_max = last column + 1``) of boolean ``(K, H, W)`` masks.

    Raises:
        ValueError: an empty mask (it has no box).
    """
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            raise ValueError(f"mask {k} is empty: it has no box")
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def generate_shapes_detection(
    num_samples: int,
    image_size: int = 64,
    seed: int = 0,
    num_classes: int = len(SHAPE_CLASSES),
    min_objects: int = 1,
    max_objects: int = 3,
    min_scale: float = 0.12,
    max_scale: float = 0.22,
    distinct_classes: bool = True,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Generate a detection data set of shapes.

    Args:
        num_samples: number of images.
        image_size: side length in pixels (square images), at least 16.
        seed: random seed; the same seed gives the same data.
        num_classes: how many of :data:`SHAPE_CLASSES` to use (1 to 4).
        min_objects, max_objects: objects per image (uniform in that range; fewer when they do not fit).
        min_scale, max_scale: each object's radius as a fraction of ``image_size``.
        distinct_classes: the objects of one image have different classes (then ``max_objects <=
            num_classes``): a class-discriminative explanation of a detection has one right object.

    Returns:
        ``images`` uint8 ``(N, H, W, 3)``; per image ``boxes`` float32 ``(K, 4)`` (xyxy, pixels),
        ``labels`` int64 ``(K,)`` and the objects' masks bool ``(K, H, W)``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be between 1 and {len(SHAPE_CLASSES)}, got {num_classes}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
    if not 0.0 < min_scale <= max_scale < 0.5:
        raise ValueError(f"need 0 < min_scale <= max_scale < 0.5, got {min_scale} and {max_scale}")
    if distinct_classes and max_objects > num_classes:
        raise ValueError(f"distinct_classes needs max_objects <= num_classes, got {max_objects} > {num_classes}")
    rng = np.random.default_rng(seed)
    images = np.empty((num_samples, image_size, image_size, 3), dtype=np.uint8)
    all_boxes, all_labels, all_masks = [], [], []
    for i in range(num_samples):
        img = _background(rng, image_size)
        wanted = int(rng.integers(min_objects, max_objects + 1))
        placed: list[tuple[float, float, float]] = []
        masks, labels = [], []
        classes = rng.permutation(num_classes)  # distinct_classes: the k-th object takes classes[k]
        for _attempt in range(wanted * 20):
            if len(placed) == wanted:
                break
            r = rng.uniform(min_scale, max_scale) * image_size
            cx, cy = rng.uniform(r + 1, image_size - r - 1, size=2)
            if any((cx - x) ** 2 + (cy - y) ** 2 < (r + q + 2) ** 2 for x, y, q in placed):
                continue  # never overlapping: every object is whole and its box is its own
            label = int(classes[len(placed)]) if distinct_classes else int(rng.integers(num_classes))
            mask = _shape_mask(SHAPE_CLASSES[label], image_size, cx, cy, r, rng.uniform(0, np.pi))
            if not mask.any():
                continue
            colour = rng.uniform(0.0, 1.0, size=3)
            colour[rng.integers(3)] = rng.choice([0.0, 1.0])
            img[mask] = colour
            placed.append((cx, cy, r))
            masks.append(mask)
            labels.append(label)
        images[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        stacked = np.stack(masks) if masks else np.zeros((0, image_size, image_size), dtype=bool)
        all_masks.append(stacked)
        all_boxes.append(boxes_from_masks(stacked))
        all_labels.append(np.asarray(labels, dtype=np.int64))
    return images, all_boxes, all_labels, all_masks


class ShapesDetectionDataModule(DetectionDataModule):
    """Shapes for object detection: several objects per image, boxes from their masks, labels.

    Train, val and test sets are generated from ``seed``, ``seed + 1`` and ``seed + 2``. Batches are
    ``(list of (3, H, W) images in [0, 1], list of {"boxes", "labels"})`` (see
    :mod:`runner.data.detection`). ``val_masks``/``test_masks`` hold each image's object masks
    (a list of bool ``(K, H, W)``), :meth:`sample_masks` the union masks of the sample images.

    Args:
        num_train, num_val, num_test: split sizes.
        num_classes: how many shape kinds (1-4) out of circle, square, triangle, cross.
        min_objects, max_objects: objects per image.
        min_scale, max_scale: object radius as a fraction of ``image_size``.
        distinct_classes: the objects of one image have different classes (``max_objects <= num_classes``).
        **kwargs: see :class:`~runner.data.base.ImageDataModule` (``mean``/``std`` are ignored).
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
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"data.{name} must be a positive int, got {value!r}")
        if not isinstance(num_classes, int) or not 1 <= num_classes <= len(SHAPE_CLASSES):
            raise ValueError(f"data.num_classes must be between 1 and {len(SHAPE_CLASSES)}, got {num_classes!r}")
        for name, value in (("min_objects", min_objects), ("max_objects", max_objects)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"data.{name} must be an int >= 1, got {value!r}")
        if min_objects > max_objects:
            raise ValueError(f"data.min_objects={min_objects} is more than data.max_objects={max_objects}")
        if not 0.0 < min_scale <= max_scale < 0.5:
            raise ValueError(f"data.min_scale and data.max_scale need 0 < min <= max < 0.5, got {min_scale}, {max_scale}")
        if not isinstance(distinct_classes, bool):
            raise ValueError(f"data.distinct_classes must be true or false, got {distinct_classes!r}")
        if distinct_classes and max_objects > num_classes:
            raise ValueError(
                f"data.distinct_classes=true needs data.max_objects <= data.num_classes, got {max_objects} > {num_classes}"
            )
        self.distinct_classes = distinct_classes
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.min_objects, self.max_objects = min_objects, max_objects
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.class_names = list(SHAPE_CLASSES[:num_classes])
        self.val_masks: list[torch.Tensor] | None = None
        self.test_masks: list[torch.Tensor] | None = None

    def _make(self, n: int, seed: int) -> tuple[DetectionTensorDataset, list[torch.Tensor]]:
        images, boxes, labels, masks = generate_shapes_detection(
            n, self.image_size, seed, self.num_classes, self.min_objects, self.max_objects, self.min_scale, self.max_scale,
            self.distinct_classes,
        )
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
        dataset = DetectionTensorDataset(x, [torch.from_numpy(b) for b in boxes], [torch.from_numpy(lab) for lab in labels])
        return dataset, [torch.from_numpy(m) for m in masks]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set, _ = self._make(self.num_train, self.seed)
        self.val_set, self.val_masks = self._make(self.num_val, self.seed + 1)
        self.test_set, self.test_masks = self._make(self.num_test, self.seed + 2)

    def sample_masks(self, n: int) -> torch.Tensor:
        """Union object masks (bool ``(n, H, W)``) of the images :meth:`sample_images` returns."""
        if self.val_masks is None:
            self.setup("fit")
        assert self.val_masks is not None
        return torch.stack([m.any(dim=0) for m in self.val_masks[: min(n, len(self.val_masks))]])
