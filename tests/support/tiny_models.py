"""Small models for the interpret tests (a uniquely named module: ``conftest`` names clash)."""

from __future__ import annotations

import timm
import torch
from torch import nn


def tiny_cnn(num_classes: int = 4, in_chans: int = 3) -> nn.Module:
    """A small conv net: two conv stages, global average pooling, a linear head."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics, affine parameters and biases, so the model is far from linear."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
            elif isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model


class Wrapper(nn.Module):
    """Like runner's ImageClassifier: the timm model at ``backbone``, ``data_config`` exposed."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def data_config(self) -> dict:
        return timm.data.resolve_model_data_config(self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


