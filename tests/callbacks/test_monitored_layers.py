"""callbacks.monitored_layers: which layers FeatureMonitorCallback hooks, without a Trainer."""

from __future__ import annotations

import pytest
import torch

from callbacks.monitored_layers import auto_layer_names, resolve_layers


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
    assert auto_layer_names(plain) == ["1"]  # after the activation; the last conv has none


def test_auto_layer_names_of_any_cnn_are_stage_outputs_after_their_activation() -> None:
    """Issue 22: without timm's feature_info, `auto` took pre-ReLU convolutions and the final
    Linear of a plain CNN, and only layer4.0/layer4.1 of torchvision's resnet18."""
    import torchvision
    from torch import nn

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3)
            self.act, self.pool, self.fc = nn.ReLU(), nn.MaxPool2d(2), nn.Linear(8, 10)

        def forward(self, x):
            x = self.pool(self.act(self.conv1(x)))
            x = self.pool(self.act(self.conv2(x)))
            return self.fc(self.act(self.conv3(x)).mean(dim=(2, 3)))

    # one ReLU module shared by every stage: it is named once (its statistics cover every call)
    assert auto_layer_names(Plain(), input_size=28) == ["act"]
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    assert auto_layer_names(seq, input_size=28) == ["2", "5", "8"]
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torchvision.models.resnet18(weights=None)

        def forward(self, x):
            return self.model(x)

    wrapped = Wrapped()
    assert auto_layer_names(wrapped, input_size=64) == ["model.layer1", "model.layer2", "model.layer4"]


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
