"""The LR schedule spans the run's real length: epochs, or optimizer steps with scheduler_interval=step."""

from __future__ import annotations

import functools
import math

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from runner.models import ImageClassifier


def _fit(model: ImageClassifier, **trainer_kwargs) -> pl.Trainer:
    data = TensorDataset(torch.randn(24, 3, 32, 32), torch.arange(24) % 3)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, **trainer_kwargs)
    trainer.fit(model, DataLoader(data, batch_size=4))
    return trainer


def _model(interval: str, **scheduler_kwargs) -> ImageClassifier:
    return ImageClassifier(
        backbone="resnet18", num_classes=3, image_size=32,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        scheduler=functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, **scheduler_kwargs),
        scheduler_interval=interval,
    )


def test_step_interval_spans_every_optimizer_step() -> None:
    model = _model("step", T_max=None)
    trainer = _fit(model, max_epochs=2, accumulate_grad_batches=2)  # 6 batches/epoch -> 3 steps/epoch
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.T_max == 6 == trainer.global_step
    # the schedule ends where the run ends (cosine reaches eta_min=0 at the last step)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_epoch_interval_spans_max_epochs() -> None:
    model = _model("epoch", T_max=None)
    trainer = _fit(model, max_epochs=3, limit_train_batches=2)
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 3


def test_an_explicit_t_max_is_kept() -> None:
    model = _model("epoch", T_max=10)
    trainer = _fit(model, max_epochs=2, limit_train_batches=1)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.T_max == 10
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 10)))


def test_unbounded_run_needs_an_explicit_length() -> None:
    model = _model("step", T_max=None)
    with pytest.raises(ValueError, match="model.scheduler.T_max=null"):
        _fit(model, max_epochs=-1, max_steps=-1, limit_train_batches=1)
