"""Train/val/test splits generated from ``seed``, ``seed + 1``, ``seed + 2``, with ground-truth masks.

:class:`GeneratedSplits` is the part the generated datamodules share (``shapes.py``,
``shapes_detection.py``): the split sizes, :meth:`~GeneratedSplits.setup` and
:meth:`~GeneratedSplits.sample_masks`. A subclass says only what differs: how one split is
generated (:meth:`~GeneratedSplits._make`) and what the sample mask of an image is
(:meth:`~GeneratedSplits._sample_mask_batch`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import torch
from torch.utils.data import Dataset

from interpret.checks import positive_int

__all__ = ["GeneratedSplits"]

#: the masks of one split: a bool ``(N, H, W)`` tensor, or a list of per-image ``(K, H, W)`` tensors
Masks = TypeVar("Masks", torch.Tensor, list[torch.Tensor])


class GeneratedSplits(Generic[Masks]):
    """Mixin (put it before the datamodule base) for data generated afresh from a seed.

    Train, val and test sets are generated from ``seed``, ``seed + 1`` and ``seed + 2``;
    ``val_masks``/``test_masks`` hold each image's object mask(s), and :meth:`sample_masks`
    returns the masks matching ``sample_images`` (the first validation images).
    """

    seed: int
    train_set: Dataset | None
    val_set: Dataset | None
    test_set: Dataset | None

    def _init_splits(self, num_train: int, num_val: int, num_test: int) -> None:
        """Check and keep the split sizes (``data.num_train``/``num_val``/``num_test``, each an int >= 1)."""
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            positive_int(value, f"data.{name}")
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.val_masks: Masks | None = None
        self.test_masks: Masks | None = None

    def _make(self, n: int, seed: int) -> tuple[Any, Masks]:
        """Generate ``n`` items from ``seed``: the dataset and its masks."""
        raise NotImplementedError

    def _sample_mask_batch(self, masks: Masks) -> torch.Tensor:
        """The first validation images' masks -> one bool ``(n, H, W)`` tensor."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set, _ = self._make(self.num_train, self.seed)
        self.val_set, self.val_masks = self._make(self.num_val, self.seed + 1)
        self.test_set, self.test_masks = self._make(self.num_test, self.seed + 2)

    def sample_masks(self, n: int) -> torch.Tensor:
        """Object masks (bool ``(n, H, W)``) of the images ``sample_images`` returns for the same ``n``."""
        if self.val_masks is None:
            self.setup("fit")
        assert self.val_masks is not None
        return self._sample_mask_batch(self.val_masks[: min(n, len(self.val_masks))])
