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


def test_sample_panel_parts_colour_bar_and_mask_outline() -> None:
    from interpret.tiles import sample_panel

    image = torch.full((3, 32, 32), 0.5)
    heat = torch.zeros(32, 32)
    heat[:, 16:] = 1.0
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:24, 8:24] = True
    panel = sample_panel(image, heat, mask=mask, min_size=160)
    assert panel.shape[0] >= 160 and panel.shape[1] >= 3 * 160 + 20  # 3 parts of >= 160 px and a colour bar
    header = panel.shape[0] - 160
    heat_part = panel[header:, 166:326]  # the heatmap alone: right half bright (viridis 1), left half dark
    assert heat_part[80, 140].mean() > heat_part[80, 20].mean() + 60
    picture = panel[header:, :160]
    assert (picture[40, 60:100] == 255).all()  # the mask's top edge (x5) outlined in white on the grey picture
    assert (picture[80, 80] == picture[5, 5]).all()  # inside: the picture untouched


def test_signed_panel_uses_a_diverging_map_with_white_zero() -> None:
    from interpret.tiles import sample_panel, signed_to_unit

    signed = torch.zeros(32, 32)
    signed[:, :8] = 2.0
    signed[:, -8:] = -1.0
    assert signed_to_unit(signed)[0, 0] == 1.0 and signed_to_unit(signed)[0, 16] == 0.5
    panel = sample_panel(torch.zeros(3, 32, 32), signed, signed=True, min_size=160)
    heat = panel[panel.shape[0] - 160 :, 166:326].astype(int)
    red, zero, blue = heat[80, 10], heat[80, 80], heat[80, 155]
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 40  # positive red, negative blue
    assert zero.min() > 230  # zero is white


def test_grid_captions_wrap_instead_of_being_cut() -> None:
    tiles = [np.zeros((20, 60, 3), dtype=np.uint8)] * 2
    short = make_grid(tiles, ["a", "b"], ncols=2, font_size=10)
    long = make_grid(tiles, ["pred: square (0.45), true: triangle", "b"], ncols=2, font_size=10)
    assert long.shape[0] >= short.shape[0] + 2 * 13  # the long caption takes 3+ lines, nothing cut


def test_classification_tiles_show_signed_integrated_gradients(cnn) -> None:
    from interpret import get_explainer
    from interpret.tasks import SampleRequest, task_for

    task, x = task_for(cnn), torch.randn(3, 3, 16, 16)
    request = SampleRequest(method="integrated_gradients", explainer=get_explainer("integrated_gradients", cnn, steps=4))
    result = task.explain_samples(cnn, x, request)
    assert result.signed is not None and result.signed.shape == (3, 16, 16) and (result.signed < 0).any()
    grid, summary = task.render_samples(x, result, request, labels=torch.tensor([0, 1, 2]), class_names=None, title="t",
                                        masks=torch.ones(3, 16, 16, dtype=torch.bool))
    assert grid.shape[1] >= 2 * 3 * 160 and grid.shape[0] >= 2 * 160  # 2 samples a row, parts of >= 160 px
    assert summary.startswith("0: pred: ") and "true: 0" in summary


def test_detection_tiles_dash_the_truth_colour_by_class_and_add_a_legend() -> None:
    from interpret.render import class_colour
    from interpret.tasks import SampleRequest, SampleResult
    from interpret.tasks.detection import DetectionExplanation, DetectionTask

    maps = torch.rand(2, 32, 32)
    found = DetectionExplanation(
        boxes=torch.tensor([[4.0, 4.0, 16.0, 16.0], [18.0, 18.0, 30.0, 30.0]]), labels=torch.tensor([1, 2]),
        scores=torch.tensor([0.9, 0.6]), maps=maps, method="gradcam", combined=maps.amax(0), logits=torch.zeros(2),
        sources=torch.zeros(2), image=np.zeros((32, 32, 3), np.uint8))
    grid, summary = DetectionTask().render_samples(
        torch.zeros(1, 3, 32, 32), SampleResult(detections=[found]), SampleRequest(method="gradcam", max_detections=2),
        labels=None, class_names=["bg", "square", "circle"], title="t", truth_boxes=[np.array([[2.0, 20.0, 12.0, 30.0]])])
    assert summary == "0: square 0.90, circle 0.60"
    assert grid.shape[1] >= 3 * 160  # the image, then one tile per detection, each >= 160 px
    legend = grid[-30:]
    for label in (1, 2):  # the legend's swatches in the classes' colours
        assert (legend == np.array(class_colour(label), dtype=np.uint8)).all(axis=-1).sum() > 50
    from interpret.render import draw_boxes

    solid = draw_boxes(np.zeros((40, 40, 3), np.uint8), [(5, 5, 36, 36)], colours=[(255, 255, 255)])
    dashed = draw_boxes(np.zeros((40, 40, 3), np.uint8), [(5, 5, 36, 36)], dashed=True, colours=[(255, 255, 255)])
    assert (solid[5, 5:35] == 255).all() and 0.3 < (dashed[5, 5:35, 0] == 255).mean() < 0.8  # gaps in the dashes
