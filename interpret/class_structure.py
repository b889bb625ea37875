"""Class structure of a batch's similarity matrix: the order by class, the class blocks and how far
samples of one class are more alike than samples of different classes.

Pure functions on tensors (no Lightning), used by :class:`callbacks.GramMatrixCallback` and drawn by
:func:`interpret.gram_render.render_gram`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["class_blocks", "class_separation", "label_order"]


def label_order(labels: Tensor) -> Tensor:
    """The permutation that sorts ``labels`` (``(N,)``) ascending, stable: within one class the
    samples keep their order (the batch order)."""
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got shape {tuple(labels.shape)}")
    return torch.sort(labels, stable=True).indices


def class_blocks(labels: Tensor) -> list[tuple[int, int, int]]:
    """The runs of equal consecutive labels as ``(label, start, stop)`` (``stop`` exclusive); for
    labels sorted by :func:`label_order`, one block per class present."""
    values = [int(v) for v in labels.tolist()]
    blocks: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            blocks.append((values[start], start, i))
            start = i
    return blocks


def class_separation(gram: Tensor, labels: Tensor) -> float:
    """Mean within-class similarity minus mean between-class similarity of a similarity matrix.

    The means are over the off-diagonal pairs ``(i, j)``, ``i != j``: within-class pairs share a
    label, between-class pairs do not (pooled: a class with more samples has more pairs). A class
    with one sample has no within-class pair. For the centred cosine Gram matrix
    (:func:`interpret.stats.gram_to_show`) it is near 0 when the features ignore the class and
    grows (up to 2) as the classes separate.

    Args:
        gram: ``(N, N)`` similarity matrix.
        labels: ``(N,)`` integer class of each row.

    Returns:
        The difference, or NaN when there is no within-class pair (every class has one sample) or
        no between-class pair (fewer than 2 classes); NaN entries of ``gram`` are left out.

    Raises:
        ValueError: ``gram`` is not square or ``labels`` does not have one entry per row.
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be (N, N), got shape {tuple(gram.shape)}")
    if labels.shape != (gram.shape[0],):
        raise ValueError(f"labels must be ({gram.shape[0]},), got shape {tuple(labels.shape)}")
    g = gram.detach().double()
    labels = labels.to(g.device)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(g.shape[0], dtype=torch.bool, device=g.device)
    finite = torch.isfinite(g)
    within, between = same & off & finite, ~same & off & finite
    if not bool(within.any()) or not bool(between.any()):
        return float("nan")
    return float(g[within].mean() - g[between].mean())
