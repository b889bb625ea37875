"""The class structure of a similarity matrix: order by class, blocks, class separation (no Trainer)."""

from __future__ import annotations

import math

import pytest
import torch

from interpret.class_structure import class_blocks, class_separation, label_order
from interpret.stats import gram_to_show


def test_label_order_is_stable_within_a_class() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    order = label_order(labels)
    assert order.tolist() == [1, 4, 3, 0, 2, 5]  # class 0: samples 1, 4 in batch order; class 2: 0, 2, 5
    assert labels[order].tolist() == [0, 0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match=r"labels must be \(N,\)"):
        label_order(torch.zeros(2, 2, dtype=torch.long))


def test_class_blocks_are_the_runs_of_equal_labels() -> None:
    assert class_blocks(torch.tensor([0, 0, 1, 3, 3, 3])) == [(0, 0, 2), (1, 2, 3), (3, 3, 6)]
    assert class_blocks(torch.tensor([5])) == [(5, 0, 1)]
    assert class_blocks(torch.tensor([], dtype=torch.long)) == []


def test_class_separation_is_within_minus_between_over_off_diagonal_pairs() -> None:
    gram = torch.tensor([[1.0, 0.8, 0.1, -0.2],
                         [0.8, 1.0, 0.3, 0.0],
                         [0.1, 0.3, 1.0, 0.6],
                         [-0.2, 0.0, 0.6, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    within = (0.8 + 0.6) / 2  # pairs (0, 1), (2, 3); the diagonal is left out
    between = (0.1 - 0.2 + 0.3 + 0.0) / 4
    assert class_separation(gram, labels) == pytest.approx(within - between)
    # a class with one sample adds between-class pairs only
    assert class_separation(gram, torch.tensor([0, 0, 1, 2])) == pytest.approx(0.8 - (0.1 - 0.2 + 0.3 + 0.0 + 0.6) / 5)


def test_class_separation_is_nan_without_within_or_between_pairs() -> None:
    gram = torch.eye(3)
    assert math.isnan(class_separation(gram, torch.tensor([0, 1, 2])))  # every class has one sample
    assert math.isnan(class_separation(gram, torch.tensor([4, 4, 4])))  # fewer than 2 classes
    assert math.isnan(class_separation(torch.ones(1, 1), torch.tensor([0])))
    nan_pair = torch.tensor([[1.0, float("nan"), 0.0], [float("nan"), 1.0, 0.5], [0.0, 0.5, 1.0]])
    # the only within pair is NaN: no within pair left
    assert math.isnan(class_separation(nan_pair, torch.tensor([0, 0, 1])))
    with pytest.raises(ValueError, match=r"labels must be \(3,\)"):
        class_separation(gram, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"gram must be \(N, N\)"):
        class_separation(torch.ones(2, 3), torch.tensor([0, 1]))


def test_class_separation_of_centred_features_grows_with_class_structure() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (64,), generator=g)
    noise = torch.randn(64, 32, generator=g)
    centres = 3 * torch.randn(4, 32, generator=g)
    ignoring = class_separation(gram_to_show(noise), labels)
    separated = class_separation(gram_to_show(centres[labels] + noise), labels)
    assert abs(ignoring) < 0.05
    assert separated > 0.5
