"""The pure functions behind the callbacks, without a Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.feature_monitor import (
    DEFAULT_REDUCTIONS,
    LayerStats,
    activation_stats,
    auto_layer_names,
    finalize_stats,
    merge_moments,
    merge_stats,
    resolve_layers,
)
from callbacks.grad_norm import grad_norms, layer_group
from callbacks.gram_matrix import (
    centre,
    cosine_gram,
    effective_rank,
    even_indices,
    gram_statistics,
    mean_offdiag,
    render_gram,
)
from callbacks.image_logging import to_uint8_hwc
from interpret import make_grid
from callbacks.nan_guard import is_finite


# ------------------------------------------------------------------ feature statistics
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


def test_layer_stats_rank_reduction_is_the_chan_merge() -> None:
    """The torchmetrics state's dist_reduce_fx (what DDP sync runs) merges stacked rank rows."""
    g = torch.Generator().manual_seed(2)
    rank_data = [100 + 0.01 * torch.randn(4, 7, generator=g), 100 + 0.01 * torch.randn(9, 7, generator=g)]
    metrics = []
    for x in rank_data:
        m = LayerStats(("count", "mean", "m2", "zeros", "max"), DEFAULT_REDUCTIONS)
        m.update(activation_stats(x))
        metrics.append(m)
    stacked = torch.stack([m.stats for m in metrics])
    merged = metrics[0].as_dict(metrics[0]._reductions["stats"](stacked))
    everything = torch.cat([x.flatten() for x in rank_data]).double()
    stats = finalize_stats(merged)
    assert stats["std"] == pytest.approx(float(everything.std(unbiased=False)), rel=1e-6)
    assert stats["max"] == pytest.approx(float(everything.max()))


def test_auto_layer_names_of_timm_backbones() -> None:
    import timm

    def named(backbone: str, **kwargs) -> list[str]:
        model = torch.nn.Module()
        model.backbone = timm.create_model(backbone, pretrained=False, num_classes=10, **kwargs)
        return auto_layer_names(model)

    assert named("resnet18") == ["backbone.layer1", "backbone.layer2", "backbone.layer4"]
    assert named("convnext_nano") == ["backbone.stages.0", "backbone.stages.2", "backbone.stages.3"]
    assert named("vit_tiny_patch16_224", img_size=32, patch_size=4) == [
        "backbone.blocks.3",
        "backbone.blocks.7",
        "backbone.blocks.11",
    ]
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.Flatten())
    assert auto_layer_names(plain) == ["0", "2"]


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
    torch.testing.assert_close(centre(healthy).mean(0), torch.zeros(32), atol=1e-5, rtol=0)


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
    module = torch.nn.Module()
    module.a = torch.nn.Module()
    module.a.x = torch.nn.Linear(1, 4)
    module.b = torch.nn.Linear(9, 1, bias=False)
    module.unused = torch.nn.Linear(2, 2)  # no .grad: skipped
    module.a.x.weight.grad = torch.full((4, 1), 1.0)
    module.a.x.bias.grad = torch.full((4,), 2.0)
    module.b.weight.grad = torch.ones(1, 9)
    norms = grad_norms(module, 2.0, group_of=lambda n: n.split(".")[0])
    assert set(norms) == {"a", "b", "total"}
    assert float(norms["a"]) == pytest.approx(math.sqrt(4 + 16))
    assert float(norms["b"]) == pytest.approx(3.0)
    assert float(norms["total"]) == pytest.approx(math.sqrt(20 + 9))
    inf = grad_norms(module, math.inf, group_of=lambda n: n.split(".")[0])
    assert float(inf["total"]) == 2.0 and float(inf["b"]) == 1.0
    assert grad_norms(torch.nn.Linear(2, 2), 2.0) == {}


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


def test_make_grid_upscales_and_captions() -> None:
    tiles = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(8)]
    grid = make_grid(tiles, [["true: 1", "pred: 1 (0.90)"]] * 8, title="gradcam", ncols=4, min_tile=128)
    assert grid.shape[1] >= 4 * 128 and grid.shape[0] >= 2 * 128
    # the tiles are there: the 8th tile's colour appears
    assert (grid == 140).all(axis=-1).any()
