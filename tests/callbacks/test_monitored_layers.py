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
