"""FeatureVisualizer: statistics, layer comparison, top channels, receptive fields, plots; model untouched."""

from __future__ import annotations

import pytest
import torch
from tests.support.tiny_models import randomize_batchnorm, tiny_cnn
from PIL import Image
from torch import nn

from interpret.features import FeatureVisualizer, feature_statistics


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(tiny_cnn()).eval()


def test_feature_statistics_match_a_hand_computation(cnn: nn.Module) -> None:
    x = torch.randn(3, 3, 12, 12)
    stats = FeatureVisualizer(cnn).get_feature_statistics(x, "2")  # after the first ReLU
    with torch.no_grad():
        expected = cnn[:3](x)  # (3, 8, 12, 12)
    per_channel = expected.transpose(0, 1).reshape(8, -1)
    torch.testing.assert_close(stats["mean"], per_channel.mean(1))
    torch.testing.assert_close(stats["std"], per_channel.std(1, unbiased=False))
    torch.testing.assert_close(stats["max"], per_channel.amax(1))
    torch.testing.assert_close(stats["sparsity"], (per_channel == 0).float().mean(1))
    assert 0 < float(stats["sparsity"].mean()) < 1  # a ReLU: some zeros, not all
    # a stable std for a large mean: float64 inside
    shifted = feature_statistics(torch.full((2, 1, 4, 4), 4096.0) + torch.arange(16.0).view(1, 1, 4, 4) / 256)
    assert float(shifted["std"][0]) == pytest.approx(float(torch.arange(16.0).std(unbiased=False)) / 256, rel=1e-6)


def test_compare_layers_uses_one_forward_pass(cnn: nn.Module) -> None:
    calls = []
    handle = cnn.register_forward_hook(lambda *_: calls.append(1))
    table = FeatureVisualizer(cnn).compare_layers(torch.randn(2, 3, 12, 12), ["0", "2", "5"])
    handle.remove()
    assert len(calls) == 1
    assert list(table) == ["0", "2", "5"]
    assert table["0"]["shape"] == (8, 12, 12) and table["5"]["shape"] == (16, 6, 6)
    assert table["0"]["sparsity"] == 0.0 and table["2"]["sparsity"] > 0.0  # conv output vs after ReLU
    assert 0 < table["5"]["active_channels"] <= 1
    with pytest.raises(ValueError, match="layer_names must be a non-empty list"):
        FeatureVisualizer(cnn).compare_layers(torch.randn(1, 3, 8, 8), "0")


def test_top_activating_features_known_answer() -> None:
    # a 1x1 identity convolution: channel c of image i responds with exactly values[i, c]
    conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    values = torch.tensor([[1.0, 0.0, 5.0], [2.0, 0.5, 0.0], [3.0, 0.2, 1.0], [0.0, 0.1, 2.0]])
    images = values.view(4, 3, 1, 1).expand(4, 3, 6, 6).clone()
    top = FeatureVisualizer(model).get_top_activating_features(images, "0", top_k=2, images_per_channel=3)
    # channel means: 1.5, 0.2, 2.0 -> channels 2 then 0
    assert top["channels"].tolist() == [2, 0]
    torch.testing.assert_close(top["channel_scores"], torch.tensor([2.0, 1.5]))
    assert top["images"].tolist() == [[0, 3, 2], [2, 1, 0]]
    torch.testing.assert_close(top["image_scores"], torch.tensor([[5.0, 2.0, 1.0], [3.0, 2.0, 1.0]]))
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        FeatureVisualizer(model).get_top_activating_features(images, "0", top_k=0)


def test_receptive_field_of_two_3x3_convolutions_is_5x5() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    with torch.no_grad():
        for conv in model:
            conv.weight.uniform_(0.1, 1.0)  # positive: no cancellation inside the field
    image = torch.randn(3, 15, 15)
    field = FeatureVisualizer(model).visualize_receptive_field(image, "1", channel=2)
    assert field.shape == (15, 15)
    nonzero = (field > 0).nonzero()
    assert nonzero[:, 0].min() == 5 and nonzero[:, 0].max() == 9  # centre 7 +- 2
    assert nonzero[:, 1].min() == 5 and nonzero[:, 1].max() == 9
    assert len(nonzero) == 25 and float(field.max()) == 1.0
    corner = FeatureVisualizer(model).visualize_receptive_field(image, "1", channel=0, position=(0, 0))
    assert (corner > 0).nonzero()[:, 0].max() == 2
    # gradients are enabled locally: works under no_grad and inference_mode
    with torch.inference_mode():
        torch.testing.assert_close(FeatureVisualizer(model).visualize_receptive_field(image, "1", channel=2), field)
    with pytest.raises(ValueError, match="channel must be an int from 0 to 3"):
        FeatureVisualizer(model).visualize_receptive_field(image, "1", channel=4)


def test_plot_feature_maps_sorts_and_saves(cnn: nn.Module, tmp_path) -> None:
    image = torch.randn(3, 12, 12)
    visualizer = FeatureVisualizer(cnn)
    features = visualizer.get_feature_maps(image, "2")[0]
    figure = visualizer.plot_feature_maps(image, "2", num_features=4, save_path=tmp_path / "maps.png")
    assert figure.channels == features.flatten(1).mean(1).topk(4).indices.tolist()
    assert len([a for a in figure.axes if a.images]) == 4
    with Image.open(tmp_path / "maps.png") as png:
        assert png.size[0] > 50 and png.size[1] > 50
    by_variance = visualizer.plot_feature_maps(image, "2", num_features=3, sort_by="variance")
    assert by_variance.channels == features.flatten(1).var(1, unbiased=False).topk(3).indices.tolist()
    everything = visualizer.plot_feature_maps(image, "2", num_features=100)
    assert len(everything.channels) == 8  # at most the layer's channels
    with pytest.raises(ValueError, match="sort_by can be activation, variance, got 'mean'"):
        visualizer.plot_feature_maps(image, "2", sort_by="mean")


def test_model_is_left_untouched_also_on_error(cnn: nn.Module) -> None:
    cnn.train()
    cnn[0].weight.requires_grad_(False)
    grad = torch.ones_like(cnn[4].weight)
    cnn[4].weight.grad = grad
    flags = [(m, m.training) for m in cnn.modules()]
    params = [(p, p.requires_grad, p.grad) for p in cnn.parameters()]
    running = cnn[1].running_mean.clone()
    visualizer = FeatureVisualizer(cnn)
    x = torch.randn(2, 3, 12, 12)
    visualizer.get_feature_statistics(x, "1")
    visualizer.compare_layers(x, ["1", "4"])
    visualizer.visualize_receptive_field(x, "4", channel=1)
    visualizer.plot_feature_maps(x, "4", num_features=2)
    with pytest.raises(ValueError, match="channel must be an int"):
        visualizer.visualize_receptive_field(x, "4", channel=99)
    with pytest.raises(ValueError, match=r"layer_name 'conv9' is not a layer of Sequential"):
        visualizer.get_feature_statistics(x, "conv9")
    assert all(m.training == flag for m, flag in flags)
    assert all(p.requires_grad == rg and p.grad is g for p, rg, g in params)
    assert cnn[4].weight.grad is grad and torch.equal(grad, torch.ones_like(grad))
    torch.testing.assert_close(cnn[1].running_mean, running)  # eval mode inside: BN statistics untouched
    assert _hooks(cnn) == 0


def test_images_from_files_and_pil(cnn: nn.Module, tmp_path) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (10, 14), (200, 30, 40)).save(path)
    visualizer = FeatureVisualizer(cnn, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    from_file = visualizer.get_feature_maps(str(path), "0")
    with Image.open(path) as pil:
        from_pil = visualizer.get_feature_maps(pil, "0")
    expected = ((torch.tensor([200, 30, 40]) / 255.0 - 0.5) / 0.25).view(1, 3, 1, 1).expand(1, 3, 14, 10)
    with torch.no_grad():
        torch.testing.assert_close(from_file, cnn[0](expected))
    torch.testing.assert_close(from_pil, from_file)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        visualizer.get_feature_maps(str(tmp_path / "missing.png"), "0")
    with pytest.raises(TypeError, match="image must be a file path, a PIL image"):
        visualizer.get_feature_maps(42, "0")
