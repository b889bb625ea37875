"""Dataset cartography in plain PyTorch (no Lightning): the maths of ``callbacks.CartographyCallback``.

Swayamdipta et al., *Dataset Cartography* (EMNLP 2020): follow, for every training sample, the
probability the model gives its label at each epoch. Three numbers per sample then map the data:

- ``confidence``: the mean of that probability over epochs (low: hard to learn, or mislabeled);
- ``variability``: its standard deviation over epochs (high: ambiguous);
- ``correctness``: the fraction of epochs the sample was predicted right.

The record is kept as running sums (one row per sample, float64), so it costs ``O(samples)``
memory however long the run, merges epoch by epoch and fits in a checkpoint:

- :func:`label_probabilities`: logits and labels of a batch -> the label's probability, and whether
  the prediction was right;
- :func:`first_occurrences`: where each distinct index first appears (a DDP epoch pads its last
  batches with repeated samples: each sample counts once per epoch);
- :func:`accumulate`: add one epoch's records to the sums;
- :func:`summarize`: the sums -> index, label, confidence, variability, correctness, epochs;
- :func:`precision_at_k`: how many of the ``k`` lowest-scored samples are among known positives
  (e.g. the samples whose labels were flipped on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = [
    "SUM_FIELDS",
    "accumulate",
    "empty_sums",
    "first_occurrences",
    "label_probabilities",
    "precision_at_k",
    "summarize",
]

#: the columns of the running sums, one row per sample index: the epochs it was seen, its label (the
#: latest seen), the sum of its label's probability, of that probability squared, and of correct predictions
SUM_FIELDS: tuple[str, ...] = ("count", "label", "prob_sum", "prob_sq_sum", "correct_sum")


def empty_sums(num_samples: int = 0) -> Tensor:
    """Running sums of ``num_samples`` samples, none seen yet: float64 ``(num_samples, len(SUM_FIELDS))`` zeros."""
    return torch.zeros(num_samples, len(SUM_FIELDS), dtype=torch.float64)


def label_probabilities(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The probability of each sample's label and whether the model predicted it.

    Args:
        logits: ``(B, K)`` class scores (any float dtype; the softmax is taken in float32 or wider).
        labels: ``(B,)`` integer labels in ``0..K-1``.

    Returns:
        ``probs`` ``(B,)`` float32: ``softmax(logits)[i, labels[i]]``; ``correct`` ``(B,)`` bool:
        ``argmax(logits[i]) == labels[i]``.

    Raises:
        ValueError: ``logits`` is not ``(B, K)`` or ``labels`` not ``(B,)`` integers.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
        raise ValueError(
            f"labels must be ({logits.shape[0]},) integers, got {labels.dtype} of shape {tuple(labels.shape)}"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    labels = labels.long().unsqueeze(1)
    probs = logits.to(dtype).softmax(dim=1).gather(1, labels).squeeze(1).float()
    correct = logits.argmax(dim=1) == labels.squeeze(1)
    return probs, correct


def first_occurrences(indices: Tensor) -> Tensor:
    """The positions in ``indices`` (``(M,)`` ints) where each distinct value first appears, in ascending value."""
    if indices.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=indices.device)
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(indices.numel(), device=indices.device)
    first = torch.full((unique.numel(),), indices.numel(), dtype=torch.long, device=indices.device)
    return first.scatter_reduce_(0, inverse, positions, reduce="amin")


def accumulate(sums: Tensor, indices: Tensor, labels: Tensor, probs: Tensor, correct: Tensor) -> Tensor:
    """Add one epoch's records to the running sums (grown when an index lies beyond them).

    Each index should appear once (see :func:`first_occurrences`); the label kept is the latest.

    Args:
        sums: float64 ``(N, len(SUM_FIELDS))`` (e.g. :func:`empty_sums`), on the CPU.
        indices: ``(M,)`` sample indices ``>= 0``.
        labels: ``(M,)`` the labels the samples were trained with.
        probs: ``(M,)`` the probability of the label (:func:`label_probabilities`).
        correct: ``(M,)`` bool or 0/1: predicted right.

    Returns:
        The updated sums (a new tensor when grown, else ``sums`` itself, updated in place).

    Raises:
        ValueError: the four records differ in length, or an index is negative.
    """
    if not (indices.shape == labels.shape == probs.shape == correct.shape) or indices.ndim != 1:
        raise ValueError(
            f"indices, labels, probs and correct must be 1-d of one length, got shapes {tuple(indices.shape)}, "
            f"{tuple(labels.shape)}, {tuple(probs.shape)}, {tuple(correct.shape)}"
        )
    if indices.numel() == 0:
        return sums
    indices = indices.detach().long().cpu()
    if int(indices.min()) < 0:
        raise ValueError(f"sample indices must be >= 0, got {int(indices.min())}")
    size = int(indices.max()) + 1
    if size > sums.shape[0]:
        sums = torch.cat([sums, empty_sums(size - sums.shape[0])])
    p = probs.detach().cpu().double()
    sums[:, 0].index_add_(0, indices, torch.ones_like(p))
    sums[indices, 1] = labels.detach().cpu().double()
    sums[:, 2].index_add_(0, indices, p)
    sums[:, 3].index_add_(0, indices, p * p)
    sums[:, 4].index_add_(0, indices, correct.detach().cpu().double())
    return sums


def summarize(sums: Tensor) -> dict[str, Tensor]:
    """The cartography of every sample seen at least once, by ascending index.

    Returns:
        ``index`` (int64), ``label`` (int64), ``confidence`` (mean probability of the label over its
        epochs), ``variability`` (the population standard deviation of that probability),
        ``correctness`` (fraction of its epochs predicted right), ``epochs`` (int64: how many epochs
        it was seen); float columns are float64.
    """
    seen = torch.nonzero(sums[:, 0] > 0).squeeze(1)
    rows = sums[seen]
    count = rows[:, 0]
    confidence = rows[:, 2] / count
    variance = (rows[:, 3] / count - confidence * confidence).clamp_min(0.0)
    return {
        "index": seen.long(),
        "label": rows[:, 1].round().long(),
        "confidence": confidence,
        "variability": variance.sqrt(),
        "correctness": rows[:, 4] / count,
        "epochs": count.round().long(),
    }


def precision_at_k(scores: Tensor, positives: Iterable[int] | Tensor, k: int | None = None,
                   indices: Tensor | None = None) -> float:
    """The share of the ``k`` lowest-scored samples that are positives (ties: the lower index first).

    Args:
        scores: ``(N,)`` one score per sample (e.g. cartography's confidence: low = suspicious).
        positives: the indices of the positive samples (e.g. ``datamodule.noisy_indices``).
        k: how many of the lowest scores to look at; None: as many as there are positives.
        indices: ``(N,)`` the sample index of each score; None: ``0..N-1``.

    Returns:
        ``|lowest k ∩ positives| / k``; 0.0 when ``k`` is 0.

    Raises:
        ValueError: ``k`` negative or larger than the number of scores, or ``indices`` of another length.
    """
    scores = torch.as_tensor(scores).flatten()
    ids = torch.arange(scores.numel()) if indices is None else torch.as_tensor(indices).flatten().long().cpu()
    if ids.numel() != scores.numel():
        raise ValueError(f"indices has {ids.numel()} entries for {scores.numel()} scores")
    wanted = {int(i) for i in torch.as_tensor(list(positives) if not isinstance(positives, Tensor) else positives)
              .flatten().tolist()}
    k = len(wanted) if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= scores.numel():
        raise ValueError(f"k must be an int in [0, {scores.numel()}], got {k!r}")
    if k == 0:
        return 0.0
    order = torch.argsort(scores.detach().cpu().double(), stable=True)[:k]
    return sum(int(ids[i]) in wanted for i in order.tolist()) / k
