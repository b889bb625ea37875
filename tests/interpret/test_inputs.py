"""Input coercion, target classes, batching and bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from interpret import GradCAM, IntegratedGradients, InvalidImageError, get_explainer, register_method
from interpret.methods.registry import available_methods


def test_pil_chw_and_batch_inputs(resnet) -> None:
    cam = GradCAM(resnet, input_size=64)
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    assert cam.explain(pil).shape == (64, 64)  # the model's input size
    assert cam.explain(pil, original_size=True).shape == (40, 48)  # for overlays on the photo
    assert cam.explain(torch.randn(3, 40, 48)).shape == (40, 48)  # tensors: model inputs as they are
    assert cam.explain(torch.randn(2, 3, 40, 48)).shape == (2, 40, 48)


def test_pil_is_resized_to_the_timm_input_size_before_the_model_sees_it(resnet) -> None:
    """The model sees the data config's 224x224, whatever the photo's size (issue 7 item 2)."""
    seen = []
    handle = resnet.conv1.register_forward_hook(lambda m, a, o: seen.append(tuple(a[0].shape[-2:])))
    try:
        heatmap = GradCAM(resnet).explain(Image.new("RGB", (300, 120), (10, 200, 30)))
    finally:
        handle.remove()
    assert seen == [(224, 224)] and heatmap.shape == (224, 224)


def test_pil_into_fixed_size_vit_is_resized_and_map_returned_at_pil_size(vit) -> None:
    pil = Image.new("RGB", (50, 45), (120, 30, 200))
    assert GradCAM(vit).explain(pil).shape == (32, 32)
    assert GradCAM(vit).explain(pil, original_size=True).shape == (45, 50)


def test_file_paths_are_accepted_everywhere_an_image_is(resnet, tmp_path) -> None:
    import interpret

    array = np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "cat.png")
    path = tmp_path / "cat.png"
    cam = GradCAM(resnet, input_size=32)
    from_file = cam.explain(str(path))
    torch.testing.assert_close(from_file, cam.explain(Image.fromarray(array)))
    torch.testing.assert_close(cam.explain(path), from_file)  # PathLike too
    assert [m.shape for m in cam.explain_batch([str(path), path])] == [(32, 32), (32, 32)]
    result = interpret.explain_prediction(resnet, str(path), input_size=32)
    assert result["heatmap"].shape == (32, 32) and result["overlay"].shape == (40, 48, 3)
    assert interpret.explain_prediction(resnet, path, input_size=32, original_size=True)["heatmap"].shape == (40, 48)
    written = interpret.visualize_batch(resnet, [str(path)], output_dir=tmp_path / "out", input_size=32)
    assert len(written) == 1 and written[0].exists()


def test_missing_and_unreadable_files_are_named(cnn, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such image file .*nope.png"):
        GradCAM(cnn).explain(str(tmp_path / "nope.png"))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png.* is not a readable image"):
        GradCAM(cnn).explain(tmp_path / "notes.png")


def test_mean_std_arguments_normalise_pil_images_and_overlays(cnn) -> None:
    """A white PIL image becomes (1 - mean) / std with the statistics given, not ImageNet's."""
    seen = []
    handle = cnn[0].register_forward_hook(lambda m, a, o: seen.append(a[0].detach().clone()))
    try:
        GradCAM(cnn, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=8).explain(
            Image.new("RGB", (20, 20), (255, 255, 255))
        )
    finally:
        handle.remove()
    # seen[0] may be the blank probe that chooses the automatic layer of a non-timm model
    assert seen[-1].shape == (1, 3, 8, 8)
    torch.testing.assert_close(seen[-1], torch.full((1, 3, 8, 8), 2.0))
    with pytest.raises(ValueError, match="give both mean and std"):
        GradCAM(cnn, mean=(0.5, 0.5, 0.5))


def test_target_class_forms(cnn) -> None:
    cam = GradCAM(cnn)
    x = torch.randn(3, 3, 12, 12)
    a = cam.explain(x, target_class=[1, 1, 1])
    torch.testing.assert_close(cam.explain(x, target_class=1), a)
    torch.testing.assert_close(cam.explain(x, target_class=torch.tensor([1, 1, 1])), a)
    torch.testing.assert_close(cam.explain(x, target_class=np.array([1, 1, 1])), a)
    predicted = cnn(x).argmax(1)
    torch.testing.assert_close(cam.explain(x), cam.explain(x, target_class=predicted))


def test_explain_batch_matches_explain(cnn) -> None:
    cam = GradCAM(cnn)
    x = torch.randn(5, 3, 12, 12)
    torch.testing.assert_close(cam.explain_batch(x, batch_size=2, target_class=[0, 1, 2, 3, 0]), cam.explain(x, [0, 1, 2, 3, 0]))
    mixed = [torch.randn(3, 12, 12), torch.randn(3, 16, 8), Image.new("RGB", (10, 10))]
    maps = cam.explain_batch(mixed, batch_size=2)
    assert [tuple(m.shape) for m in maps] == [(12, 12), (16, 8), (10, 10)]


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (torch.randn(1, 1, 3, 12, 12), ValueError, r"\(C, H, W\) tensor or a \(B, C, H, W\) batch, got shape \(1, 1, 3, 12, 12\)"),
        (torch.randn(12, 12), ValueError, "got shape \\(12, 12\\)"),
        (torch.randn(4, 12, 12), ValueError, "image has 4 channels .* the model expects 3"),
        (torch.randint(0, 255, (3, 12, 12), dtype=torch.uint8), ValueError, "dtype torch.uint8"),
        ([[1, 2], [3, 4]], InvalidImageError, "PIL.Image.Image.*got list"),
        ("cat.png", FileNotFoundError, "no such image file .*cat.png"),
        (b"cat.png", InvalidImageError, "got bytes"),
        (torch.randn(0, 3, 12, 12), ValueError, "empty"),
    ],
)
def test_bad_images(cnn, image, error, match) -> None:
    with pytest.raises(error, match=match):
        GradCAM(cnn).explain(image)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (4, r"target_class 4 is out of range for a model with 4 classes \(allowed 0 to 3\)"),
        (-1, "target_class must be >= 0, got -1"),
        ([0, 1, 2], "3 entries for a batch of 2"),
        (1.5, "must be None, an int"),
        (True, "must be None, an int"),
    ],
)
def test_bad_target_class(cnn, target, match) -> None:
    for explainer in (GradCAM(cnn), IntegratedGradients(cnn, steps=2)):
        with pytest.raises(ValueError, match=match):
            explainer.explain(torch.randn(2, 3, 12, 12), target_class=target)


def test_registry(cnn) -> None:
    assert {"gradcam", "gradcam++", "integrated_gradients", "smoothgrad", "attention_rollout", "attention_flow"} <= set(
        available_methods()
    )
    assert type(get_explainer("GradCAM++", cnn)).__name__ == "GradCAMPlusPlus"
    with pytest.raises(ValueError, match=r"unknown method 'gradcan'; available: gradcam, .*Did you mean 'gradcam'"):
        get_explainer("gradcan", cnn)
    # suggestions are real method names, never an alias ('flow') nor a far-fetched match
    with pytest.raises(ValueError) as error:
        get_explainer("foo", cnn)
    assert "Did you mean" not in str(error.value) and "'flow'" not in str(error.value)
    assert "available: gradcam, gradcam++, integrated_gradients, smoothgrad" in str(error.value)
    with pytest.raises(ValueError, match="Did you mean 'attention_rollout'"):
        get_explainer("rolout", cnn)
    with pytest.raises(ValueError, match="Did you mean 'integrated_gradients'"):
        get_explainer("integrated_gradient", cnn)
    with pytest.raises(ValueError, match="takes the keywords baseline, steps"):
        get_explainer("integrated_gradients", cnn, target_layer="4")
    smooth = get_explainer("smoothgrad", cnn, base="gradcam", target_layer="4", num_samples=2)
    assert smooth.base_explainer.target_layer_name == "4"
    register_method("my_cam", lambda model, **kw: GradCAM(model, **kw), overwrite=True)
    assert get_explainer("my_cam", cnn).explain(torch.randn(3, 12, 12)).shape == (12, 12)
    with pytest.raises(ValueError, match="already registered"):
        register_method("gradcam", GradCAM)


def test_output_on_input_device_and_dtype(cnn) -> None:
    maps = GradCAM(cnn).explain(torch.randn(2, 3, 12, 12, dtype=torch.float64))
    assert maps.dtype == torch.float32 and maps.device.type == "cpu"
