"""interpret.stats: the activation statistics and Gram-matrix maths of the callbacks, without a Trainer."""

from __future__ import annotations

import math

import pytest
import torch

from interpret.stats import (
    DEFAULT_REDUCTIONS,
    activation_stats,
    center,
    cosine_gram,
    effective_rank,
    even_indices,
    finalize_stats,
    gram_statistics,
    gram_to_show,
    mean_offdiag,
    merge_moments,
    merge_stats,
)


# ------------------------------------------------------------------ activation statistics
def test_streamed_stats_equal_stats_of_everything() -> None:
    torch.manual_seed(0)
    batches = [torch.relu(torch.randn(4, 8, 5, 5) * 3 + 1) for _ in range(7)]
    acc = None
    for b in batches:
        acc = merge_stats(acc, activation_stats(b))
    stats = finalize_stats(acc)
    everything = torch.cat([b.flatten() for b in batches]).double()
    assert stats["mean"] == pytest.approx(float(everything.mean()), rel=1e-6)
    assert stats["std"] == pytest.approx(float(everything.std(unbiased=False)), rel=1e-5)
    assert stats["sparsity"] == pytest.approx(float((everything == 0).double().mean()), abs=1e-12)
    assert stats["max"] == pytest.approx(float(everything.max()))
    assert 0.0 < stats["sparsity"] < 1.0


def test_merge_is_order_free_and_memory_is_per_layer() -> None:
    a, b = activation_stats(torch.arange(6.0)), activation_stats(-torch.ones(3))
    ab, ba = merge_stats(merge_stats(None, a), b), merge_stats(merge_stats(None, b), a)
    for key in ab:
        assert float(ab[key]) == pytest.approx(float(ba[key]), rel=1e-12), key
    assert all(v.numel() == 1 for v in ab.values())  # O(1) per layer, whatever the batch count
    assert float(ab["max"]) == 5.0 and float(ab["zeros"]) == 1.0 and float(ab["count"]) == 9.0


def test_merge_rejects_a_statistic_without_reduction() -> None:
    with pytest.raises(KeyError, match="abs_sum"):
        ones = activation_stats(torch.ones(2))
        merge_stats(ones, {**ones, "abs_sum": torch.tensor(1.0)}, DEFAULT_REDUCTIONS)


def test_empty_stats_give_nan() -> None:
    zero = {k: torch.tensor(0.0, dtype=torch.float64) for k in ("count", "mean", "m2", *DEFAULT_REDUCTIONS)}
    stats = finalize_stats(zero)
    assert set(stats) == {"mean", "std", "sparsity", "max"}
    assert all(math.isnan(v) for v in stats.values())


def test_std_is_exact_when_the_mean_dwarfs_the_std() -> None:
    """Issue 7 item 7: mean 100, std 0.01 in float32 activations gave std 0.0205 (E[x^2]-mean^2)."""
    g = torch.Generator().manual_seed(0)
    batches = [100.0 + 0.01 * torch.randn(64, 16, 8, 8, generator=g) for _ in range(10)]
    acc = None
    for b in batches:
        acc = merge_stats(acc, activation_stats(b))
    stats = finalize_stats(acc)
    everything = torch.cat([b.flatten() for b in batches]).double()
    assert stats["std"] == pytest.approx(float(everything.std(unbiased=False)), rel=1e-6)
    assert stats["std"] == pytest.approx(0.01, rel=0.01)
    assert stats["mean"] == pytest.approx(float(everything.mean()), rel=1e-9)


def test_chan_merge_of_uneven_parts_equals_one_pass() -> None:
    """Rank-style merge: parts of very different sizes and means, and an empty part."""
    g = torch.Generator().manual_seed(1)
    parts = [1e4 + torch.randn(3, generator=g), -5 + 2 * torch.randn(1000, generator=g), torch.empty(0)]
    rows = [activation_stats(p) for p in parts]
    merged = rows[0]
    for r in rows[1:]:
        merged = merge_moments(merged, r)
    everything = torch.cat(parts).double()
    assert float(merged["count"]) == 1003
    assert float(merged["mean"]) == pytest.approx(float(everything.mean()), rel=1e-7)
    assert float(merged["m2"]) / 1003 == pytest.approx(float(everything.var(unbiased=False)), rel=1e-6)


def test_activation_stats_of_nan_or_inf_are_nan() -> None:
    for bad in (float("nan"), float("inf")):
        stats = finalize_stats(activation_stats(torch.tensor([0.0, 1.0, bad, 0.0])))
        assert all(math.isnan(stats[k]) for k in ("mean", "std", "sparsity")), stats
        assert stats["max"] == bad or math.isnan(stats["max"])
    stats = finalize_stats(activation_stats(torch.tensor([0.0, -0.0, 1e-45, -2.0])))
    assert stats["sparsity"] == 0.5 and 0 < stats["max"] < 1e-44  # a denormal is not zero


# ------------------------------------------------------------------ gram matrix
def test_gram_matrix_is_cosine_similarity() -> None:
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    g = cosine_gram(x)
    expected = torch.tensor([[1, 1, 0, -1], [1, 1, 0, -1], [0, 0, 1, 0], [-1, -1, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(g, expected)
    assert mean_offdiag(g) == pytest.approx((2 * 1 + 4 * 0 + 2 * 0 - 4) / 12)
    assert mean_offdiag(torch.ones(1, 1)) != mean_offdiag(torch.ones(1, 1))  # NaN for one sample


def test_centred_statistics_separate_offset_from_collapse() -> None:
    """Issue 7 item 8: non-negative features look alike uncentred; centring shows the real spread."""
    g = torch.Generator().manual_seed(0)
    healthy = torch.relu(torch.randn(64, 32, generator=g)) + 3.0  # post-ReLU-like, large common offset
    stats = gram_statistics(healthy)
    assert stats["mean_offdiag"] > 0.9  # uncentred: "everything is similar"
    assert stats["centered_mean_offdiag"] == pytest.approx(-1 / 63, abs=0.02)
    assert stats["centered_effective_rank"] > 20
    collapsed = (3.0 + torch.rand(64, 1, generator=g)) * torch.rand(1, 32, generator=g)  # one direction
    stats = gram_statistics(collapsed)
    assert stats["centered_effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert gram_statistics(torch.ones(8, 4))["centered_effective_rank"] == 0.0  # all samples identical
    torch.testing.assert_close(center(healthy).mean(0), torch.zeros(32), atol=1e-5, rtol=0)


def test_gram_matrix_flattens_and_checks_shape() -> None:
    assert cosine_gram(torch.randn(5, 2, 3)).shape == (5, 5)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cosine_gram(torch.randn(5))


def test_effective_rank_flags_collapse() -> None:
    torch.manual_seed(0)
    collapsed = torch.randn(1, 32).repeat(64, 1) * torch.rand(64, 1)
    assert effective_rank(collapsed) == pytest.approx(1.0, abs=1e-4)
    orthogonal = torch.eye(16)
    assert effective_rank(orthogonal) == pytest.approx(16.0, rel=1e-6)
    spread = torch.randn(64, 32)
    assert 20 < effective_rank(spread) <= 32
    assert effective_rank(torch.zeros(4, 3)) == 0.0
    diverged = spread.clone()
    diverged[3, 5] = float("nan")
    assert math.isnan(effective_rank(diverged))  # a diverged run's features: NaN, not an SVD error


def test_even_indices_are_deterministic_and_cover_the_ends() -> None:
    assert even_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    idx = even_indices(256, 128)
    assert len(idx) == 128 and idx[0] == 0 and idx[-1] == 255 and len(set(idx.tolist())) == 128
    assert even_indices(7, 1).tolist() == [0]


def test_gram_to_show_is_centred_by_default() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.rand(6, 32, generator=g) + 5.0  # all positive: raw cosines near 1
    assert float(cosine_gram(features).mean()) > 0.99
    torch.testing.assert_close(gram_to_show(features, centered=False), cosine_gram(features))
    shown = gram_to_show(features)
    torch.testing.assert_close(shown, cosine_gram(features - features.mean(dim=0)))
    off = shown[~torch.eye(6, dtype=torch.bool)]
    assert float(off.min()) < 0 < float(off.max()) and abs(float(off.mean())) < 0.5  # structure, not a flat 1
