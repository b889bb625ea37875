"""TaskModule, shared by the classifier and the detector: the scheduler horizon and the best-metric restore."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from runner.models import ImageClassifier, ObjectDetector
from runner.models.module import TaskModule


class _Tiny(TaskModule):
    task = "classification"
    best_metric = "val_score_best"
    validation_metrics = ("val_score",)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layer = nn.Linear(2, 2)
        self.val_score = MeanMetric()
        self.val_score_best = MaxMetric()


def _attached(model: TaskModule, max_epochs: int, steps: float) -> TaskModule:
    model._trainer = SimpleNamespace(max_epochs=max_epochs, estimated_stepping_batches=steps, model=model,
                                     lr_scheduler_configs=[])
    return model


def test_the_models_declare_their_task_and_best_metric_key() -> None:
    assert (ImageClassifier.task, ImageClassifier.best_metric) == ("classification", "val_acc_best")
    assert (ObjectDetector.task, ObjectDetector.best_metric) == ("detection", "val_map_50_best")
    assert ObjectDetector.cam_layer == "detector.head.classification_head.conv"


@pytest.mark.parametrize(("interval", "expected"), [("epoch", 7), ("step", 30)])
def test_a_null_horizon_is_this_runs_length(interval: str, expected: int) -> None:
    cosine = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=None)
    model = _attached(_Tiny(scheduler=cosine, scheduler_interval=interval), max_epochs=7, steps=30)
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["scheduler"].T_max == expected
    assert config["lr_scheduler"]["interval"] == interval and config["lr_scheduler"]["monitor"] == "val/loss"


def test_a_given_horizon_is_kept_and_an_unbounded_run_is_refused() -> None:
    given = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=5)
    model = _attached(_Tiny(scheduler=given), max_epochs=7, steps=30)
    assert model.configure_optimizers()["lr_scheduler"]["scheduler"].T_max == 5
    unbounded = functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=None)
    with pytest.raises(ValueError, match=r"model.scheduler.T_max=null .*trainer.max_epochs"):
        _attached(_Tiny(scheduler=unbounded), max_epochs=-1, steps=float("inf")).configure_optimizers()
    with pytest.raises(ValueError, match="model.scheduler_interval can be epoch or step, got 'batch'"):
        _Tiny(scheduler_interval="batch")


def test_best_metric_survives_a_checkpoint_round_trip() -> None:
    model = _Tiny()
    model.val_score_best.update(torch.tensor(0.25))
    model.val_score_best.update(torch.tensor(0.75))
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint == {"val_score_best": 0.75}

    resumed = _Tiny()
    resumed.on_load_checkpoint(checkpoint)
    resumed.val_score_best.update(torch.tensor(0.9))  # the sanity check's value: reset at train start
    resumed.val_score.update(torch.tensor(3.0))
    resumed.on_train_start()
    assert float(resumed.val_score_best.compute()) == 0.75
    assert resumed.val_score.update_count == 0

    fresh = _Tiny()
    fresh.on_save_checkpoint(empty := {})
    assert empty == {}  # nothing to keep before the first validation
    fresh.on_load_checkpoint({})  # a checkpoint without the key (an older run) starts from scratch
    fresh.on_train_start()
    assert fresh.val_score_best.update_count == 0
