"""Colormaps, overlays, grids and the high-level API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.support.tiny_models import Wrapper
from PIL import Image

from interpret import apply_colormap, compare_methods, explain_prediction, make_grid, overlay_heatmap, visualize_batch


def test_apply_colormap_shapes_and_ends() -> None:
    rgb = apply_colormap(torch.tensor([[0.0, 1.0]]), "viridis")
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (68, 1, 84)  # viridis(0)
    assert apply_colormap(np.zeros((2, 4, 5))).shape == (2, 4, 5, 3)
    with pytest.raises(ValueError, match="unknown colormap 'viridiss'.*viridis"):
        apply_colormap(np.zeros((2, 2)), "viridiss")


def test_overlay_undoes_normalisation() -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    photo = torch.rand(3, 8, 8)
    normalised = (photo - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    plain = overlay_heatmap(normalised, torch.zeros(8, 8), alpha=0.0, mean=mean, std=std)
    expected = (photo.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(plain.astype(int) - expected.astype(int)).max() <= 1
    full = overlay_heatmap(normalised, torch.ones(8, 8), alpha=1.0, mean=mean, std=std)
    assert (full == apply_colormap(np.ones((8, 8)))).all()


def test_overlay_reads_mean_std_from_model(resnet) -> None:
    photo = torch.rand(3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    out = overlay_heatmap((photo - mean) / std, np.zeros((4, 4)), alpha=0.0, model=Wrapper(resnet))
    expected = (photo.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_make_grid_with_captions() -> None:
    tiles = [np.full((16, 20, 3), v, dtype=np.uint8) for v in (0, 100, 200)]
    grid = make_grid(tiles, captions=["a", "b", "a long caption that does not fit"], ncols=2, padding=2)
    assert grid.dtype == np.uint8 and grid.ndim == 3
    assert grid.shape[1] == 2 * 20 + 3 * 2
    assert grid.shape[0] > 2 * 16  # caption strips
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        make_grid(tiles, captions=["a", "b"])


def test_explain_prediction(resnet, tmp_path) -> None:
    x = torch.randn(3, 32, 32)
    result = explain_prediction(resnet, x, method="gradcam++", target_layer="layer3", save_path=tmp_path / "a" / "o.png")
    with torch.no_grad():
        probs = resnet(x[None]).softmax(1)[0]
    assert result["predicted_class"] == int(probs.argmax())
    assert result["probability"] == pytest.approx(float(probs.max()), rel=1e-5)
    assert result["heatmap"].shape == (32, 32) and result["overlay"].shape == (32, 32, 3)
    assert Image.open(tmp_path / "a" / "o.png").size == (32, 32)
    pil = Image.new("RGB", (24, 20), (200, 10, 10))
    no_map = explain_prediction(resnet, pil, method="integrated_gradients", return_heatmap=False, steps=4)
    assert "heatmap" not in no_map and no_map["overlay"].shape == (20, 24, 3)
    with pytest.raises(ValueError, match="use visualize_batch"):
        explain_prediction(resnet, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="target_layer applies to gradcam"):
        explain_prediction(resnet, x, method="attention_rollout", target_layer="layer3")


def test_compare_methods_one_column_per_method(resnet, tmp_path) -> None:
    figure = compare_methods(
        resnet,
        torch.randn(3, 32, 32),
        methods=["gradcam", "integrated_gradients", "smoothgrad"],
        save_path=tmp_path / "cmp.png",
        method_kwargs={"integrated_gradients": {"steps": 4}, "smoothgrad": {"num_samples": 2}},
    )
    assert len(figure.axes) == 4  # the input, then one per method
    assert [a.get_title() for a in figure.axes[1:]] == ["gradcam", "integrated_gradients", "smoothgrad"]
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_visualize_batch_writes_one_file_per_image(cnn, tmp_path) -> None:
    paths = visualize_batch(cnn, torch.randn(5, 3, 12, 12), method="gradcam", output_dir=tmp_path, batch_size=2)
    assert len(paths) == 5 and all(p.exists() for p in paths)
    assert Image.open(paths[0]).size == (12, 12)
    listed = visualize_batch(cnn, [torch.randn(3, 12, 12)], output_dir=tmp_path / "l", target_class=2, prefix="x")
    assert listed[0].name == "x_0000_class2.png"
