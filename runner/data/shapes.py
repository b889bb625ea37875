"""Datamodule over the procedurally generated shapes (see :mod:`runner.data.shapes_generator`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from interpret.checks import positive_int
from runner.data.datamodule import ImageDataModule, tensor_dataset
from runner.data.shapes_generator import SHAPE_CLASSES, generate_shapes

__all__ = ["ShapesDataModule"]


class ShapesDataModule(ImageDataModule):
    """Shapes of ``num_classes`` kinds on a cluttered background, with ground-truth masks.

    Train, val and test sets are generated from ``seed``, ``seed + 1`` and ``seed + 2``.
    ``val_masks``/``test_masks`` hold each image's object mask (bool ``(N, H, W)``), and
    :meth:`sample_masks` returns the masks matching :meth:`sample_images`.

    Args:
        num_train, num_val, num_test: split sizes.
        num_classes: how many shape kinds (2-4) out of circle, square, triangle, cross.
        **kwargs: see :class:`~runner.data.ImageDataModule`.
    """

    def __init__(
        self, num_train: int = 2000, num_val: int = 400, num_test: int = 400, num_classes: int = 4, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            positive_int(value, f"data.{name}")
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise ValueError(f"data.num_classes must be between 2 and {len(SHAPE_CLASSES)}, got {num_classes}")
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.class_names = list(SHAPE_CLASSES[:num_classes])
        self.val_masks: torch.Tensor | None = None
        self.test_masks: torch.Tensor | None = None

    def _make(self, n: int, seed: int) -> tuple[torch.utils.data.TensorDataset, torch.Tensor]:
        images, labels, masks = generate_shapes(n, self.image_size, seed, self.num_classes)
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        return tensor_dataset(self.normalize(x), torch.from_numpy(labels)), torch.from_numpy(masks)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set, _ = self._make(self.num_train, self.seed)
        self.val_set, self.val_masks = self._make(self.num_val, self.seed + 1)
        self.test_set, self.test_masks = self._make(self.num_test, self.seed + 2)

    def sample_masks(self, n: int) -> torch.Tensor:
        """Object masks of the images :meth:`sample_images` returns for the same ``n``."""
        if self.val_masks is None:
            self.setup("fit")
        assert self.val_masks is not None
        return self.val_masks[: min(n, len(self.val_masks))]
