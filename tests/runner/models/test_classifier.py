"""The timm ImageClassifier LightningModule."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import OmegaConf

from runner.data import DigitsDataModule
from runner.models import ImageClassifier


@pytest.fixture(scope="module")
def resnet() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone="resnet18", num_classes=10, image_size=32).eval()


def test_forward_gives_logits(resnet: ImageClassifier) -> None:
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = resnet(x)
    assert logits.shape == (3, 10)
    assert torch.isfinite(logits).all()


def test_forward_features_consistent_with_forward(resnet: ImageClassifier) -> None:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = resnet.forward_features(x)
        logits = resnet(x)
    assert {"features", "feature_map", "logits"} <= set(out)
    assert out["feature_map"].shape == (2, 512, 1, 1)  # layer4 output of a resnet18 at 32 px
    assert out["features"].shape == (2, 512)
    # pooled pre-logits: global average of the feature map
    assert torch.allclose(out["features"], out["feature_map"].mean(dim=(2, 3)), atol=1e-5)
    assert torch.allclose(out["logits"], logits, atol=1e-5)


def test_layers_addressable_by_name(resnet: ImageClassifier) -> None:
    names = dict(resnet.named_modules())
    for name in ("backbone", "backbone.layer1", "backbone.layer4", "backbone.fc"):
        assert name in names
    assert isinstance(names["backbone.layer4"], torch.nn.Module)
    assert names["backbone.fc"].out_features == 10


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(ValueError) as err:
        ImageClassifier(backbone="resnet181", num_classes=10)
    msg = str(err.value)
    assert "resnet181" in msg and "model.backbone" in msg
    assert "resnet18" in msg.split("resnet181", 1)[1]  # suggested after the bad name
    with pytest.raises(ValueError, match="vit_tiny_patch16_224"):
        ImageClassifier(backbone="vit_tiny_patch16_22", num_classes=10)


def test_num_classes_required() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        ImageClassifier(backbone="resnet18", num_classes=None)


def test_pretrained_without_weights_path_or_cached_hub_weights_raises(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, offline
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"resnet18\.a1_in1k .*model\.weights_path"):
        ImageClassifier(backbone="resnet18", num_classes=10, pretrained=True)


def test_missing_weights_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ImageClassifier(backbone="resnet18", num_classes=10, weights_path=str(missing))


def test_local_weights_path_loads(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32)
    with torch.no_grad():
        source.backbone.conv1.weight.fill_(0.123)
    path = tmp_path / "weights.pth"
    torch.save(source.backbone.state_dict(), path)

    torch.manual_seed(2)
    fresh = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32)
    assert not torch.allclose(fresh.backbone.conv1.weight, source.backbone.conv1.weight)
    loaded = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32, pretrained=True, weights_path=str(path))
    assert torch.allclose(loaded.backbone.conv1.weight, torch.full_like(loaded.backbone.conv1.weight, 0.123))
    assert torch.equal(loaded.backbone.layer3[0].conv1.weight, source.backbone.layer3[0].conv1.weight)
    assert torch.equal(loaded.backbone.fc.weight, source.backbone.fc.weight)


def test_vit_at_32_pixels() -> None:
    model = ImageClassifier(
        backbone="vit_tiny_patch16_224", num_classes=10, image_size=32, backbone_kwargs={"patch_size": 8}
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        out = model.forward_features(x)
    assert logits.shape == (2, 10)
    assert out["feature_map"].shape == (2, 1 + (32 // 8) ** 2, 192)  # class token + 4x4 patches
    assert out["features"].shape == (2, 192)
    assert torch.allclose(out["logits"], logits, atol=1e-5)
    assert "backbone.blocks.0.attn" in dict(model.named_modules())
    # the statistics the datamodule normalises with come from here
    assert len(model.data_config["mean"]) == 3 and len(model.data_config["std"]) == 3


class _KeepOutputs(Callback):
    """Keeps what training_step / validation_step returned."""

    def __init__(self) -> None:
        self.train: list[Any] = []
        self.val: list[Any] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.train.append(outputs)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self.val.append(outputs)


def _small_model(**kwargs: Any) -> ImageClassifier:
    return ImageClassifier(backbone="resnet10t", num_classes=10, image_size=16, **kwargs)


def test_training_step_returns_outputs_in_a_real_fit() -> None:
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(image_size=16, batch_size=16, seed=0)
    model = _small_model(optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    keep = _KeepOutputs()
    trainer = pl.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[keep],
    )
    trainer.fit(model, datamodule=dm)
    assert len(keep.train) == 1 and len(keep.val) == 1
    for out in (keep.train[0], keep.val[0]):
        assert set(out) == {"loss", "logits", "features", "targets"}
        assert out["logits"].shape == (16, 10)
        assert out["features"].shape[0] == 16 and out["features"].ndim == 2
        assert out["targets"].shape == (16,) and out["targets"].dtype == torch.long
        assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
        assert not out["logits"].requires_grad and not out["features"].requires_grad
    assert {"train/loss_step", "val/loss", "val/acc", "val/acc_best"} <= set(trainer.callback_metrics)
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)


def test_scheduler_partial_is_configured() -> None:
    model = _small_model(
        optimizer=functools.partial(torch.optim.AdamW, lr=3e-4),
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2),
        scheduler_interval="step",
    )
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    model.trainer = trainer
    conf = model.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.AdamW)
    assert conf["optimizer"].param_groups[0]["lr"] == pytest.approx(3e-4)
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert conf["lr_scheduler"]["interval"] == "step"
    with pytest.raises(ValueError, match="scheduler_interval"):
        _small_model(scheduler_interval="batch")


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(image_size=16, batch_size=32, seed=0)
    # backbone_kwargs as Hydra hands them over: a DictConfig
    model = _small_model(
        backbone_kwargs=OmegaConf.create({"drop_rate": 0.0}),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        scheduler=functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=1),
    )
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max", save_last=True)
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[ckpt],
    )
    trainer.fit(model, datamodule=dm)
    last = tmp_path / "last.ckpt"
    assert last.is_file() and Path(ckpt.best_model_path).is_file()
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 2 and state["epoch"] == 0
    assert state["hyper_parameters"]["backbone"] == "resnet10t"
    assert state["hyper_parameters"]["num_classes"] == 10
    assert "optimizer" not in state["hyper_parameters"]
    key = "backbone.fc.weight"
    assert torch.equal(state["state_dict"][key], model.state_dict()[key])
    # and the module comes back from it
    restored = ImageClassifier.load_from_checkpoint(last, weights_only=True)
    assert torch.equal(restored.state_dict()[key], model.state_dict()[key])
