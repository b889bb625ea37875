"""The pure functions behind the callbacks, without a Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.feature_monitor import (
    DEFAULT_REDUCTIONS,
    activation_sums,
    finalize_stats,
    merge_sums,
    resolve_layers,
)
from callbacks.grad_norm import grad_norms, layer_group
from callbacks.gram_matrix import effective_rank, even_indices, gram_matrix, mean_offdiag, render_gram
from callbacks.image_logging import to_uint8_hwc
from callbacks.interpretation import render_grid
from callbacks.nan_guard import is_finite


# ------------------------------------------------------------------ feature statistics
def test_streamed_stats_equal_stats_of_everything() -> None:
    torch.manual_seed(0)
    batches = [torch.relu(torch.randn(4, 8, 5, 5) * 3 + 1) for _ in range(7)]
    acc = None
    for b in batches:
        acc = merge_sums(acc, activation_sums(b))
    stats = finalize_stats(acc)
    everything = torch.cat([b.flatten() for b in batches]).double()
    assert stats["mean"] == pytest.approx(float(everything.mean()), rel=1e-6)
    assert stats["std"] == pytest.approx(float(everything.std(unbiased=False)), rel=1e-5)
    assert stats["sparsity"] == pytest.approx(float((everything == 0).double().mean()), abs=1e-12)
    assert stats["max"] == pytest.approx(float(everything.max()))
    assert 0.0 < stats["sparsity"] < 1.0


def test_merge_is_order_free_and_memory_is_per_layer() -> None:
    a, b = activation_sums(torch.arange(6.0)), activation_sums(-torch.ones(3))
    ab, ba = merge_sums(merge_sums(None, a), b), merge_sums(merge_sums(None, b), a)
    assert {k: float(v) for k, v in ab.items()} == {k: float(v) for k, v in ba.items()}
    assert all(v.numel() == 1 for v in ab.values())  # O(1) per layer, whatever the batch count
    assert float(ab["max"]) == 5.0 and float(ab["zeros"]) == 1.0 and float(ab["count"]) == 9.0


def test_merge_rejects_a_statistic_without_reduction() -> None:
    with pytest.raises(KeyError, match="abs_sum"):
        merge_sums({"count": torch.tensor(1.0)}, {"abs_sum": torch.tensor(1.0)}, DEFAULT_REDUCTIONS)


def test_empty_sums_give_no_stats() -> None:
    zero = {k: torch.tensor(0.0, dtype=torch.float64) for k in DEFAULT_REDUCTIONS}
    assert finalize_stats(zero) == {}


def test_resolve_layers_names_the_closest_layers() -> None:
    model = torch.nn.Sequential()
    model.add_module("backbone", torch.nn.Sequential())
    model.backbone.add_module("layer4", torch.nn.ReLU())
    model.backbone.add_module("layer3", torch.nn.ReLU())
    assert list(resolve_layers(model, ["backbone.layer4"])) == ["backbone.layer4"]
    with pytest.raises(ValueError, match=r"'backbone.layr4'.*closest names: backbone.layer4"):
        resolve_layers(model, ["backbone.layr4"])
    with pytest.raises(ValueError, match="top-level modules: backbone"):
        resolve_layers(model, ["zzzzzzzzzz"])


# ------------------------------------------------------------------ gram matrix
def test_gram_matrix_is_cosine_similarity() -> None:
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    g = gram_matrix(x)
    expected = torch.tensor([[1, 1, 0, -1], [1, 1, 0, -1], [0, 0, 1, 0], [-1, -1, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(g, expected)
    assert mean_offdiag(g) == pytest.approx((2 * 1 + 4 * 0 + 2 * 0 - 4) / 12)
    assert mean_offdiag(torch.ones(1, 1)) != mean_offdiag(torch.ones(1, 1))  # NaN for one sample


def test_gram_matrix_flattens_and_checks_shape() -> None:
    assert gram_matrix(torch.randn(5, 2, 3)).shape == (5, 5)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        gram_matrix(torch.randn(5))


def test_effective_rank_flags_collapse() -> None:
    torch.manual_seed(0)
    collapsed = torch.randn(1, 32).repeat(64, 1) * torch.rand(64, 1)
    assert effective_rank(collapsed) == pytest.approx(1.0, abs=1e-4)
    orthogonal = torch.eye(16)
    assert effective_rank(orthogonal) == pytest.approx(16.0, rel=1e-6)
    spread = torch.randn(64, 32)
    assert 20 < effective_rank(spread) <= 32
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_even_indices_are_deterministic_and_cover_the_ends() -> None:
    assert even_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    idx = even_indices(256, 128)
    assert len(idx) == 128 and idx[0] == 0 and idx[-1] == 255 and len(set(idx.tolist())) == 128
    assert even_indices(7, 1).tolist() == [0]


def test_render_gram_draws_an_rgb_image() -> None:
    img = render_gram(torch.eye(8) * 2 - 1, "title")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 200


# ------------------------------------------------------------------ gradient norms
def test_grad_norms_per_group_and_total() -> None:
    grads = [("a.x.weight", torch.full((4,), 1.0)), ("a.x.bias", torch.full((5,), 2.0)), ("b.weight", torch.ones(9))]
    norms = grad_norms(grads, 2.0, group_of=lambda n: n.split(".")[0])
    assert float(norms["a"]) == pytest.approx(math.sqrt(4 + 20))
    assert float(norms["b"]) == pytest.approx(3.0)
    assert float(norms["total"]) == pytest.approx(math.sqrt(24 + 9))
    inf = grad_norms(grads, math.inf, group_of=lambda n: n.split(".")[0])
    assert float(inf["total"]) == 2.0 and float(inf["b"]) == 1.0
    assert grad_norms([], 2.0) == {}


def test_layer_group() -> None:
    assert layer_group("backbone.layer1.0.conv1.weight", "backbone.") == "backbone.layer1"
    assert layer_group("head.weight") == "head"


# ------------------------------------------------------------------ NaN guard, images
@pytest.mark.parametrize(
    ("value", "finite"),
    [(None, True), (1.0, True), (float("nan"), False), (float("inf"), False), (torch.tensor([1.0, float("nan")]), False)],
)
def test_is_finite(value: object, finite: bool) -> None:
    assert is_finite(value) is finite


def test_to_uint8_hwc_accepts_every_image_form() -> None:
    chw = torch.rand(3, 10, 12)
    out = to_uint8_hwc(chw)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert to_uint8_hwc(np.zeros((10, 12), np.float32)).shape == (10, 12, 3)
    assert to_uint8_hwc(Image.new("L", (12, 10))).shape == (10, 12, 3)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50)
    assert to_uint8_hwc(fig).shape == (50, 100, 3)
    with pytest.raises(TypeError, match="PIL image"):
        to_uint8_hwc("not an image")
    with pytest.raises(ValueError, match="channels"):
        to_uint8_hwc(np.zeros((5, 5, 7)))


def test_render_grid_upscales_and_captions() -> None:
    tiles = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(8)]
    grid = render_grid(tiles, [["true: 1", "pred: 1 (0.90)"]] * 8, title="gradcam", columns=4)
    assert grid.shape[1] >= 4 * 128 and grid.shape[0] >= 2 * 128
    # the tiles are there: the 8th tile's colour appears
    assert (grid == 140).all(axis=-1).any()
