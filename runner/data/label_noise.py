"""The training view of a classification dataset: each item with its index, some labels flipped on purpose.

:class:`~runner.data.datamodule.ImageDataModule` trains on :class:`IndexedDataset` over its
``train_set``: items ``(image, label, index)``, so a callback can follow every sample across epochs
(``callbacks.CartographyCallback``), and with ``data.label_noise`` a seeded share of the labels
flipped to another class (:func:`choose_flips`), as a test of how well mislabeled samples can be found.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["IndexedDataset", "check_label_noise", "choose_flips"]

#: keeps the flips' random stream apart from the other draws of the same ``data.seed``
_NOISE_STREAM = 0x6E6F697365


def check_label_noise(value: Any) -> float:
    """``data.label_noise`` as a float in [0, 1); a one-line ValueError naming the key otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"data.label_noise must be a number in [0, 1) (the share of training labels flipped), "
                         f"got {value!r}")
    return float(value)


def choose_flips(num_samples: int, fraction: float, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which training samples get a wrong label, and how far it is moved.

    ``round(fraction * num_samples)`` distinct samples are drawn from ``(seed, stream)``; each one's
    label becomes ``(label + offset) % num_classes`` with ``offset`` in ``1..num_classes-1``, so a
    flipped label is always another class.

    Returns:
        ``indices`` (sorted int64) and their ``offsets`` (int64), both ``(k,)``.
    """
    k = int(round(fraction * num_samples))
    if k == 0 or num_classes < 2:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone()
    rng = np.random.default_rng([int(seed) % 2**32, _NOISE_STREAM])
    chosen = rng.choice(num_samples, size=k, replace=False)
    offsets = rng.integers(1, num_classes, size=k)
    order = np.argsort(chosen)
    return torch.from_numpy(chosen[order].astype(np.int64)), torch.from_numpy(offsets[order].astype(np.int64))


class IndexedDataset(Dataset):
    """``(image, label, index)`` items of a dataset of ``(image, label)`` pairs, with some labels flipped.

    Args:
        dataset: the training set (items ``(image, label)``; the label an int or an int tensor).
        flips: ``(indices, offsets)`` of :func:`choose_flips`, or None (no label changed).
        num_classes: the number of classes (flipped labels are taken modulo it).
    """

    def __init__(self, dataset: Dataset, flips: tuple[torch.Tensor, torch.Tensor] | None = None,
                 num_classes: int = 0) -> None:
        self.dataset = dataset
        self.num_classes = num_classes
        self.offsets: dict[int, int] = {}
        if flips is not None:
            self.offsets = {int(i): int(o) for i, o in zip(flips[0].tolist(), flips[1].tolist())}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        image, label = self.dataset[index][:2]
        offset = self.offsets.get(int(index))
        if offset is not None:
            label = (label + offset) % self.num_classes
        return image, label, int(index)
