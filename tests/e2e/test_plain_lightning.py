"""The callbacks in a plain Lightning project of a user's own, each attached with its defaults.

Issue 22: two modules as a user writes them, with ``Trainer`` defaults (no ``default_root_dir``: the
TensorBoard logger's ``lightning_logs/version_N``), and every callback of ``callbacks/`` at its
defaults. What each logs is read back from the TensorBoard event files.

- A plain CNN on 1-channel 16 px images: ``training_step`` returns only the loss, the datamodule has
  no ``sample_images`` and no ``mean``/``std``.
- torchvision's ``resnet18`` (``weights=None``) wrapped in a LightningModule at 64 px, whose
  ``training_step`` returns ``{"loss", "features"}``; its datamodule declares ``mean``/``std``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import (
    EMAWeights,
    FeatureMonitorCallback,
    GradNormMonitor,
    GramMatrixCallback,
    InterpretationCallback,
    TerminateOnNaN,
)
from tests.support.callback_fits import read_tensorboard_images, read_tensorboard_scalars

pytestmark = pytest.mark.slow


def squares(n: int, channels: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with a bright square in the quadrant of their class (4 classes), plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = 0.1 * torch.rand(n, channels, size, size, generator=g)
    half, side = size // 2, max(size // 4, 2)
    for i, label in enumerate(labels.tolist()):
        top, left = (label // 2) * half + side // 2, (label % 2) * half + side // 2
        images[i, :, top : top + side, left : left + side] = 1.0
    return images, labels


class SquaresData(pl.LightningDataModule):
    """A user's datamodule: loaders only (no sample_images, no class names)."""

    def __init__(self, channels: int, size: int, n_train: int, n_val: int, batch_size: int) -> None:
        super().__init__()
        self.train = TensorDataset(*squares(n_train, channels, size, seed=0))
        self.val = TensorDataset(*squares(n_val, channels, size, seed=1))
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


class NormalisedSquaresData(SquaresData):
    """The same, declaring the statistics its images are normalised with."""

    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)


class PlainCNN(pl.LightningModule):
    """A user's small CNN: training_step returns only the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ResNet18(pl.LightningModule):
    """torchvision's resnet18 (no download) in a LightningModule; returns its pooled features too."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.net = torchvision.models.resnet18(weights=None, num_classes=4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return torch.flatten(n.avgpool(n.layer4(n.layer3(n.layer2(n.layer1(x))))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        features = self.features(x)
        return {"loss": F.cross_entropy(self.net.fc(features), y), "features": features}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def every_callback() -> dict[str, Any]:
    return {
        "interpretation": InterpretationCallback(),
        "features": FeatureMonitorCallback(),
        "gram": GramMatrixCallback(),
        "grad_norm": GradNormMonitor(),
        "ema": EMAWeights(),
        "nan": TerminateOnNaN(),
    }


def plain_trainer(callbacks: list[Any], **kwargs: Any) -> pl.Trainer:
    """Lightning's defaults (logger, directories), on the CPU, quiet and short."""
    options: dict[str, Any] = dict(accelerator="cpu", devices=1, callbacks=callbacks, enable_progress_bar=False,
                                   enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    return pl.Trainer(**{**options, **kwargs})


def fit(model: pl.LightningModule, data: pl.LightningDataModule, **kwargs: Any) -> dict[str, Any]:
    cbs = every_callback()
    trainer = plain_trainer(list(cbs.values()), **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, data)
    return {"trainer": trainer, "cbs": cbs, "warnings": [str(w.message) for w in caught],
            "log_dir": Path(trainer.log_dir).resolve()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both projects fitted once, one after the other, in one working directory."""
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True)
    root = tmp_path_factory.mktemp("plain_lightning")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cnn = fit(PlainCNN(), SquaresData(channels=1, size=16, n_train=64, n_val=16, batch_size=16), max_epochs=2)
        resnet = fit(ResNet18(), NormalisedSquaresData(channels=3, size=64, n_train=32, n_val=16, batch_size=8),
                     max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    return {"root": root.resolve(), "cnn": cnn, "resnet": resnet}


def said(run: dict[str, Any], *parts: str) -> list[str]:
    return [w for w in run["warnings"] if all(p in w for p in parts)]


def test_each_run_writes_its_images_in_its_own_logger_directory(runs) -> None:
    cnn, resnet = runs["cnn"], runs["resnet"]
    assert cnn["log_dir"] == runs["root"] / "lightning_logs" / "version_0"
    assert resnet["log_dir"] == runs["root"] / "lightning_logs" / "version_1"
    for run in (cnn, resnet):
        assert list((run["log_dir"] / "images" / "interpretation" / "gradcam").glob("step_*.png"))
    assert not (runs["root"] / "images").exists()  # nothing under the working directory's images/


def test_interpretation_takes_validation_images_and_reads_or_asks_for_the_statistics(runs) -> None:
    cnn, resnet = runs["cnn"], runs["resnet"]
    cb = cnn["cbs"]["interpretation"]
    val_images, val_labels = squares(16, 1, 16, seed=1)
    assert torch.equal(cb.images, val_images[:8]) and torch.equal(cb.labels, val_labels[:8])
    assert (cb.mean, cb.std) == ((0.0,), (1.0,))  # no statistics anywhere: the images as they are
    assert len(said(cnn, "InterpretationCallback", "mean=..., std=...")) == 1
    assert cb.num_logged == 2 and cb.num_failed == 0  # end of epoch 0, end of training
    assert len(read_tensorboard_images(cnn["log_dir"], "interpretation/gradcam")) == 2
    assert cb.explainer.target_layer_name == "net.4"  # the last stage after its ReLU, 8x8

    rcb = resnet["cbs"]["interpretation"]
    assert (rcb.mean, rcb.std) == (NormalisedSquaresData.mean, NormalisedSquaresData.std)
    assert not said(resnet, "InterpretationCallback", "mean=")
    # 64 px: layer4 is 2x2; the automatic layer is the last stage of at least 4x4 (README)
    assert rcb.explainer.target_layer_name == "net.layer3" and rcb.num_failed == 0
    assert len(read_tensorboard_images(resnet["log_dir"], "interpretation/gradcam")) == rcb.num_logged >= 1


def test_feature_monitor_watches_stage_outputs_after_their_activation(runs) -> None:
    cnn, resnet = runs["cnn"], runs["resnet"]
    fm = cnn["cbs"]["features"]
    assert fm.resolved_layer_names == ["net.1", "net.4"]  # the ReLUs: never a conv before them, nor the Linear
    for layer in fm.resolved_layer_names:
        sparsity = read_tensorboard_scalars(cnn["log_dir"], f"features/{layer}/sparsity")
        assert len(sparsity) == 2 and all(0 < v < 1 for _, v in sparsity), (layer, sparsity)
    rfm = resnet["cbs"]["features"]
    assert rfm.resolved_layer_names == ["net.layer1", "net.layer2", "net.layer4"]
    for layer in rfm.resolved_layer_names:
        assert read_tensorboard_scalars(resnet["log_dir"], f"features/{layer}/mean"), layer


def test_gram_matrix_says_what_to_do_and_logs_a_short_run_at_its_end(runs) -> None:
    cnn, resnet = runs["cnn"], runs["resnet"]
    # the CNN returns only the loss: the hint names the argument and what training_step returns
    hint = said(cnn, "GramMatrixCallback", "return {'loss': loss, 'features': features} from training_step")
    assert len(hint) == 1 and "GramMatrixCallback(feature_key=...)" in hint[0]
    assert not any("callbacks.gram_matrix" in w for w in cnn["warnings"])  # no key of this project's configs
    assert not list(cnn["log_dir"].rglob("gram_matrix/*.png"))
    assert said(resnet, "GramMatrixCallback", "about 2 optimizer steps, fewer than log_every_n_steps=100")
    assert read_tensorboard_scalars(resnet["log_dir"], "gram_matrix/centered_effective_rank")[0][0] == 2
    assert len(read_tensorboard_images(resnet["log_dir"], "gram_matrix")) == 1
    assert (resnet["log_dir"] / "images" / "gram_matrix" / "step_000002.png").is_file()


def test_the_other_callbacks_work_at_their_defaults(runs) -> None:
    for name in ("cnn", "resnet"):
        run = runs[name]
        assert read_tensorboard_scalars(run["log_dir"], "val/acc_ema"), name  # EMAWeights validates
        assert not run["cbs"]["nan"].run_failed
        assert run["trainer"].state.status == "finished"


def test_wrong_channels_and_no_samples_fail_at_setup_in_one_line(tmp_path: Path) -> None:
    data = SquaresData(channels=1, size=16, n_train=16, n_val=8, batch_size=8)
    wrong = InterpretationCallback(sample_images=torch.rand(2, 3, 16, 16))
    trainer = plain_trainer([wrong], default_root_dir=tmp_path, logger=False, max_epochs=1)
    with pytest.raises(ValueError, match=r"^[^\n]*have 3 channel\(s\) but the model's first convolution takes 1[^\n]*$"):
        trainer.fit(PlainCNN(), data)
    assert trainer.global_step == 0
    data.setup("fit")
    trainer = plain_trainer([InterpretationCallback()], default_root_dir=tmp_path, logger=False, max_epochs=1)
    with pytest.raises(ValueError, match=r"^[^\n]*neither a datamodule nor a validation loader; pass sample_images"):
        trainer.fit(PlainCNN(), train_dataloaders=data.train_dataloader())
