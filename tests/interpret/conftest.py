"""Fixtures of small models shared by the interpret tests (CPU, tiny inputs)."""

from __future__ import annotations

import pytest
import timm
import torch
from tests.support.tiny_models import randomize_batchnorm, tiny_cnn
from torch import nn


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(tiny_cnn()).eval()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(timm.create_model("resnet18", pretrained=False, num_classes=5)).eval()


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=4, depth=3
    ).eval()


@pytest.fixture(scope="module")
def vit_registers() -> nn.Module:
    """Register tokens, no class token, average pooling, any input size."""
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        num_classes=4,
        depth=3,
        reg_tokens=2,
        class_token=False,
        global_pool="avg",
        dynamic_img_size=True,
    ).eval()
