"""interpret.cartography: the maths of dataset cartography, without a Trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpret.cartography import (
    accumulate,
    empty_sums,
    first_occurrences,
    label_probabilities,
    precision_at_k,
    summarize,
)


def test_label_probabilities_are_the_softmax_at_the_label() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 5.0]], dtype=torch.float16)
    labels = torch.tensor([0, 2, 2])
    probs, correct = label_probabilities(logits, labels)
    expected = torch.softmax(logits.float(), dim=1)[torch.arange(3), labels]
    assert probs.dtype == torch.float32 and torch.allclose(probs, expected)
    assert correct.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [(torch.zeros(4), torch.zeros(4, dtype=torch.long), "logits"),
     (torch.zeros(4, 3), torch.zeros(4), "labels"),
     (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "labels")],
)
def test_label_probabilities_refuse_other_shapes(logits: torch.Tensor, labels: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        label_probabilities(logits, labels)


def test_first_occurrences_keep_each_index_once() -> None:
    indices = torch.tensor([5, 2, 5, 7, 2, 0])
    positions = first_occurrences(indices)
    assert positions.tolist() == [5, 1, 0, 3]  # values 0, 2, 5, 7
    assert first_occurrences(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_running_sums_match_the_statistics_of_the_whole_history() -> None:
    """Accumulated epoch by epoch (in shuffled order, growing), the sums give numpy's mean/std over epochs."""
    rng = np.random.default_rng(0)
    epochs, n = 5, 37
    probs = rng.uniform(size=(epochs, n))
    correct = rng.uniform(size=(epochs, n)) < 0.6
    labels = rng.integers(0, 4, size=n)
    sums = empty_sums()
    for e in range(epochs):
        order = rng.permutation(n) if e else np.arange(n)[: n // 2]  # the first epoch sees only half the samples
        sums = accumulate(sums, torch.from_numpy(order), torch.from_numpy(labels[order]),
                          torch.from_numpy(probs[e, order]), torch.from_numpy(correct[e, order]))
    table = summarize(sums)
    assert table["index"].tolist() == list(range(n))
    assert table["label"].tolist() == labels.tolist()
    seen = np.ones((epochs, n), dtype=bool)
    seen[0, n // 2:] = False
    assert table["epochs"].tolist() == seen.sum(0).tolist()
    p = np.where(seen, probs, np.nan)
    np.testing.assert_allclose(table["confidence"].numpy(), np.nanmean(p, 0), atol=1e-12)
    np.testing.assert_allclose(table["variability"].numpy(), np.nanstd(p, 0), atol=1e-7)
    np.testing.assert_allclose(table["correctness"].numpy(), np.nanmean(np.where(seen, correct, np.nan), 0))


def test_summarize_leaves_out_unseen_indices() -> None:
    sums = accumulate(empty_sums(), torch.tensor([3, 1]), torch.tensor([2, 0]), torch.tensor([0.5, 1.0]),
                      torch.tensor([True, True]))
    table = summarize(sums)
    assert table["index"].tolist() == [1, 3] and table["label"].tolist() == [0, 2]
    assert table["variability"].tolist() == [0.0, 0.0]


def test_accumulate_refuses_bad_records() -> None:
    with pytest.raises(ValueError, match="one length"):
        accumulate(empty_sums(), torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0.5]), torch.tensor([True]))
    with pytest.raises(ValueError, match=">= 0"):
        accumulate(empty_sums(), torch.tensor([-1]), torch.tensor([0]), torch.tensor([0.5]), torch.tensor([True]))


def test_precision_at_k() -> None:
    scores = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.3, 0.05])
    assert precision_at_k(scores, [1, 5]) == 1.0  # the two lowest
    assert precision_at_k(scores, [1, 0]) == 0.5
    assert precision_at_k(scores, [1, 0], k=4) == 0.25
    assert precision_at_k(scores, torch.tensor([12]), indices=torch.tensor([10, 11, 12, 13, 14, 15]), k=1) == 0.0
    assert precision_at_k(scores, torch.tensor([15]), indices=torch.tensor([10, 11, 12, 13, 14, 15]), k=1) == 1.0
    assert precision_at_k(scores, []) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(scores, [1], k=7)
