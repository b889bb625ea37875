"""The Gram matrix sorted by class: read its class bands (:func:`interpret.gram_render.render_gram`)
back, and data whose batches carry labels on some ranks and steps only."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from interpret.render import class_colour
from tests.support.callback_fits import TinyData

#: every colour a class band can have
BAND_COLOURS = {class_colour(k) for k in range(64)}


def band_runs(image: np.ndarray, axis: int = 0) -> list[tuple[tuple[int, int, int], int]]:
    """The class colours along the top band (``axis=0``) or the left band (``axis=1``) in order, each
    with the length (pixels) of its run: read along the row (column) holding the most band pixels."""
    img = image if axis == 0 else image.transpose(1, 0, 2)
    hits = np.zeros(img.shape[:2], dtype=bool)
    for colour in BAND_COLOURS:
        hits |= (img[..., :3] == np.array(colour, dtype=img.dtype)).all(axis=-1)
    if not hits.any():
        return []
    row = img[int(hits.sum(axis=1).argmax())]
    runs: list[tuple[tuple[int, int, int], int]] = []
    for pixel, hit in zip(row, hits[int(hits.sum(axis=1).argmax())]):
        colour = tuple(int(c) for c in pixel[:3])
        if hit and runs and runs[-1][0] == colour:
            runs[-1] = (colour, runs[-1][1] + 1)
        elif hit:
            runs.append((colour, 1))
    return runs


def expected_runs(labels: list[int], n: int) -> list[tuple[tuple[int, int, int], int]]:
    """The runs :func:`band_runs` reads for a matrix of ``n`` rows whose labels (any order) are ``labels``."""
    cell = max(1, 384 // n)
    return [(class_colour(k), labels.count(k) * cell) for k in sorted(set(labels))]


class SoftLabelData(TinyData):
    """TinyData whose batches hold one-hot float targets: no per-sample integer class labels."""

    def train_dataloader(self) -> Any:
        from torch.utils.data import DataLoader, TensorDataset

        soft = F.one_hot(self.labels, 10).float()
        return DataLoader(TensorDataset(self.images, soft), batch_size=self.batch_size, shuffle=False)


class PartlyLabelledData(TinyData):
    """Under DDP, rank r trains on its own ``batches`` batches of ``batch_sizes[r]`` images with
    labels ``(3 * i + r) % 5``; on rank ``soft_rank`` batch ``soft_batch`` holds one-hot float
    targets instead (that rank has no labels at that step)."""

    def __init__(
        self, batch_sizes: tuple[int, ...] = (8, 5), batches: int = 3, soft_rank: int = 1, soft_batch: int = 1
    ) -> None:
        super().__init__(n=16, image_size=8, batch_size=batch_sizes[0])
        self.batch_sizes, self.batches = tuple(batch_sizes), batches
        self.soft_rank, self.soft_batch = soft_rank, soft_batch

    def rank_batch(self, rank: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(100 * rank + index)
        n = self.batch_sizes[rank]
        x = torch.randn(n, 3, self.image_size, self.image_size, generator=g)
        y = (3 * torch.arange(n) + rank) % 5
        if (rank, index) == (self.soft_rank, self.soft_batch):
            return x, F.one_hot(y, 10).float()
        return x, y

    def train_dataloader(self) -> Any:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        from torch.utils.data import DataLoader

        # batch_size=None: each item is a whole batch (a plain list would be taken for several loaders)
        return DataLoader([self.rank_batch(rank, i) for i in range(self.batches)], batch_size=None)
