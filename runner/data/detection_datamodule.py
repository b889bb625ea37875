"""The base of the detection datamodules: batches of images + target dicts, their collate function and dataset.

A detection batch is ``(images, targets)``: a list of ``(C, H, W)`` float images in [0, 1] (not
normalised: torchvision detectors normalise inside, with the statistics their transform holds) and
a list of dicts ``{"boxes": (K, 4) float xyxy in pixels, "labels": (K,) int64 in 0..num_classes-1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from runner.data.datamodule import ImageDataModule

__all__ = ["DetectionDataModule", "DetectionTensorDataset", "detection_collate"]

#: the input space of a detector of this project: images in [0, 1] (the detector normalises inside)
IDENTITY_MEAN: tuple[float, float, float] = (0.0, 0.0, 0.0)
IDENTITY_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)


def detection_collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])`` (images may differ in size)."""
    images = [item[0] for item in batch]
    targets = [item[1] for item in batch]
    return images, targets


class DetectionTensorDataset(Dataset):
    """``(image, {"boxes", "labels"})`` pairs held in memory."""

    def __init__(self, images: torch.Tensor, boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> None:
        if not (len(images) == len(boxes) == len(labels)):
            raise ValueError(f"{len(images)} images, {len(boxes)} box sets and {len(labels)} label sets")
        self.images = images
        self.boxes = [b.float().reshape(-1, 4) for b in boxes]
        self.labels = [lab.long().reshape(-1) for lab in labels]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[idx], {"boxes": self.boxes[idx].clone(), "labels": self.labels[idx].clone()}


class DetectionDataModule(ImageDataModule):
    """Base class of detection datamodules; subclasses fill ``train_set``/``val_set``/``test_set`` in
    ``setup`` with datasets of ``(image in [0, 1], {"boxes", "labels"})``.

    ``mean``/``std`` are the identity ((0, 0, 0), (1, 1, 1)): the images a detector of this project
    takes are in [0, 1] and its torchvision transform normalises them with the backbone's statistics,
    so :meth:`set_normalization` keeps the identity (the callbacks and ``explain.py`` read
    ``mean``/``std`` to show the images as they are).

    :meth:`sample_images` returns the first ``n`` validation images as one ``(n, C, H, W)`` batch
    (all images of a detection datamodule of this project have the same size) and their target dicts.
    """

    collate_fn = staticmethod(detection_collate)  # lists of images and target dicts (a box count per image)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("mean", None)
        kwargs.pop("std", None)
        super().__init__(mean=IDENTITY_MEAN, std=IDENTITY_STD, **kwargs)

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """No-op: the detector normalises inside; the data stays in [0, 1]."""

    def _sample_targets(self, targets: list[Any]) -> list[dict[str, torch.Tensor]]:
        """The target dicts of the sample images, as they are."""
        return list(targets)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The identity normalisation always (a detector's data is never normalised outside the model)."""
