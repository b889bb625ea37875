"""TerminateOnNaN in real (tiny) fits, and its finiteness check."""

from __future__ import annotations

import pytest
import torch

from callbacks import TerminateOnNaN
from callbacks.terminate_on_nan import is_finite
from tests.support.callback_fits import PoisonWeights, TinyData, TinyNet


def test_nan_loss_stops_the_run_cleanly(trainer_factory) -> None:
    cb = TerminateOnNaN()
    trainer = trainer_factory([cb], max_epochs=3, limit_train_batches=10, limit_val_batches=0)
    trainer.fit(TinyNet(nan_at_step=3), TinyData(n=160))  # no exception, no sys.exit
    assert cb.run_failed is True and trainer.should_stop
    assert trainer.global_step == 4  # stopped right after the first NaN step, not after 30
    assert "training loss is not finite (nan)" in cb.reason


def test_poisoned_weights_stop_the_run(trainer_factory) -> None:
    cb = TerminateOnNaN()
    trainer = trainer_factory([PoisonWeights(at_batch=2), cb], max_epochs=2, limit_train_batches=6)
    trainer.fit(TinyNet(), TinyData(n=96))
    assert cb.run_failed and trainer.global_step == 3


def test_a_healthy_run_is_not_failed(trainer_factory) -> None:
    cb = TerminateOnNaN()
    trainer = trainer_factory([cb], limit_train_batches=3)
    trainer.fit(TinyNet(), TinyData(n=48))
    assert cb.run_failed is False and trainer.global_step == 3


def test_monitored_validation_metric(trainer_factory) -> None:
    cb = TerminateOnNaN(monitor="val/loss", check_on="validation_end")
    trainer = trainer_factory([cb], max_epochs=4, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(TinyNet(lr=1e30), TinyData(n=32))  # diverges to inf/nan
    assert cb.run_failed and "val/loss" in cb.reason
    assert trainer.current_epoch < 3


def test_nan_guard_bad_arguments() -> None:
    with pytest.raises(ValueError, match="train_batch_end or validation_end"):
        TerminateOnNaN(check_on="epoch")
    with pytest.raises(ValueError, match="needs `monitor`"):
        TerminateOnNaN(check_on="validation_end")


@pytest.mark.parametrize(
    ("value", "finite"),
    [(None, True), (1.0, True), (float("nan"), False), (float("inf"), False), (torch.tensor([1.0, float("nan")]), False)],
)
def test_is_finite(value: object, finite: bool) -> None:
    assert is_finite(value) is finite
