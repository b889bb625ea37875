"""scikit-learn's bundled handwritten digits (1797 real 8x8 scans; no download)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from runner.data.datamodule import ImageDataModule, tensor_dataset
from runner.data.splits import check_fractions, stratified_split

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ImageDataModule):
    """Digits 0-9 resized to ``image_size`` (bilinear), replicated to 3 channels.

    Args:
        val_fraction, test_fraction: stratified split sizes; the split depends only on ``seed``.
        **kwargs: see :class:`~runner.data.ImageDataModule` (batch_size, image_size, label_noise, ...).
    """

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.15, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_fractions(val_fraction, test_fraction)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.class_names = [str(d) for d in range(10)]

    def prepare_data(self) -> None:  # the data ships with scikit-learn
        pass

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N,1,8,8) in [0,1]
        images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        images = self.normalize(images.clamp(0, 1).expand(-1, 3, -1, -1))
        labels = torch.from_numpy(digits.target.astype(np.int64))
        train, val, test = stratified_split(digits.target, self.val_fraction, self.test_fraction, self.seed)
        self.train_set = tensor_dataset(images[train], labels[train])
        self.val_set = tensor_dataset(images[val], labels[val])
        self.test_set = tensor_dataset(images[test], labels[test])
