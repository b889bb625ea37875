"""Datamodule over the procedurally generated shapes (see :mod:`runner.data.shapes_generator`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.data.datamodule import ImageDataModule, tensor_dataset
from runner.data.generated_splits import GeneratedSplits
from runner.data.shapes_generator import SHAPE_CLASSES, generate_shapes

__all__ = ["ShapesDataModule"]


class ShapesDataModule(GeneratedSplits[torch.Tensor], ImageDataModule):
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
        self._init_splits(num_train, num_val, num_test)
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise ValueError(f"data.num_classes must be between 2 and {len(SHAPE_CLASSES)}, got {num_classes}")
        self.class_names = list(SHAPE_CLASSES[:num_classes])

    def _make(self, n: int, seed: int) -> tuple[torch.utils.data.TensorDataset, torch.Tensor]:
        images, labels, masks = generate_shapes(n, self.image_size, seed, self.num_classes)
        x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        return tensor_dataset(self.normalize(x), torch.from_numpy(labels)), torch.from_numpy(masks)

    def _sample_mask_batch(self, masks: torch.Tensor) -> torch.Tensor:
        """One object per image: its mask as it is."""
        return masks
