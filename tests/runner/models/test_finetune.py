"""Fine-tuning from local weights: a timm ImageNet state dict, and a checkpoint of this project."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from runner.models import ImageClassifier


def _imagenet_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A timm resnet18 with the 1000-class ImageNet head, saved as a plain state dict."""
    torch.manual_seed(3)
    source = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    state = source.state_dict()
    torch.save(state, path)
    return state


def test_imagenet_state_dict_into_a_10_class_head(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "resnet18_imagenet.pth"
    state = _imagenet_state_dict(path)
    with caplog.at_level(logging.INFO, logger="runner.models.backbone"):
        model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32, pretrained=True,
                                weights_path=str(path))
    assert model.backbone.fc.weight.shape == (10, 512)
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(model.backbone.state_dict()[name], state[name]), name
    # every tensor but the head (fc.weight, fc.bias) came from the file, and the log says so
    total = len(model.backbone.state_dict())
    assert f"Loaded {total - 2} of {total} tensors of resnet18 from {path}" in caplog.text
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_imagenet_state_dict_adapts_in_chans(tmp_path: Path) -> None:
    path = tmp_path / "resnet18_imagenet.pth"
    state = _imagenet_state_dict(path)
    model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32, in_chans=1, pretrained=True,
                            weights_path=str(path))
    assert model.backbone.conv1.weight.shape == (64, 1, 7, 7)
    # timm sums the RGB filters into one channel
    assert torch.allclose(model.backbone.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True), atol=1e-5)


def _project_checkpoint(path: Path, num_classes: int) -> ImageClassifier:
    """Train this project's LightningModule for 2 steps and save its checkpoint like ModelCheckpoint does."""
    torch.manual_seed(0)
    model = ImageClassifier(backbone="resnet18", num_classes=num_classes, image_size=32)
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.arange(8) % num_classes)
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return model


def test_project_checkpoint_loads_with_backbone_prefix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "epoch_001.ckpt"
    trained = _project_checkpoint(path, num_classes=10)
    assert any(k.startswith("backbone.") for k in torch.load(path, weights_only=True)["state_dict"])
    with caplog.at_level(logging.INFO, logger="runner.models.backbone"):
        same = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32, pretrained=True,
                               weights_path=str(path))
    for name, value in trained.backbone.state_dict().items():
        assert torch.equal(same.backbone.state_dict()[name], value), name
    total = len(same.backbone.state_dict())
    assert f"Loaded {total} of {total} tensors" in caplog.text
    # into another number of classes: everything but the head
    other = ImageClassifier(backbone="resnet18", num_classes=4, image_size=32, pretrained=True, weights_path=str(path))
    assert other.backbone.fc.weight.shape == (4, 512)
    assert torch.equal(other.backbone.layer4[1].conv2.weight, trained.backbone.layer4[1].conv2.weight)


def test_weights_that_match_nothing_fail(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="model.weights_path: none of the 1 tensors"):
        ImageClassifier(backbone="resnet18", num_classes=10, pretrained=True, weights_path=str(path))


def test_checkpoint_of_another_backbone_fails_naming_the_tensor(tmp_path: Path) -> None:
    path = tmp_path / "r18.ckpt"
    _project_checkpoint(path, num_classes=10)
    with pytest.raises(ValueError, match=r"model.weights_path: .* has shape"):
        ImageClassifier(backbone="resnet50", num_classes=10, pretrained=True, weights_path=str(path))
