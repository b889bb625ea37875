"""EMAWeights: timm's ModelEmaV3 of the weights, validated beside the model, exact across a resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from callbacks import EMAWeights
from tests.support.callback_fits import TinyData, TinyNet


class _RecordWeights(Callback):
    """The model's floating-point weights and buffers after each optimizer step."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.states.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def _trainer(tmp_path: Path, max_epochs: int, *callbacks: Callback) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", max_epochs=max_epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=list(callbacks), num_sanity_val_steps=0,
    )


def _fit(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None, *extra: Callback) -> tuple[pl.Trainer, EMAWeights]:
    torch.manual_seed(0)
    ema = EMAWeights(decay=0.6)
    trainer = _trainer(tmp_path, max_epochs, *extra, ema)
    trainer.fit(TinyNet(lr=0.1), datamodule=TinyData(n=64, batch_size=16), ckpt_path=ckpt_path)
    return trainer, ema


def test_decay_outside_0_1_is_refused_in_one_line() -> None:
    for decay in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"^callbacks.ema.decay must be in \(0, 1\)"):
            EMAWeights(decay=decay)


def test_ema_averages_logs_and_resumes_exactly(tmp_path: Path) -> None:
    record = _RecordWeights()
    trainer, ema = _fit(tmp_path / "a", 2, None, record)
    # timm's ModelEmaV3: a copy at the first step, then e <- d * e + (1 - d) * w after each step
    expected = dict(record.states[0])
    for state in record.states[1:]:
        expected = {k: 0.6 * expected[k] + 0.4 * state[k] for k in expected}
    got = ema.state_dict()["ema_state_dict"]
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in expected)
    assert not torch.allclose(got["head.weight"], record.states[-1]["head.weight"])  # it is not the last weights
    metrics = trainer.callback_metrics
    assert 0 <= float(metrics["val/acc_ema"]) <= float(metrics["val/acc_ema_best"]) <= 1

    # one epoch, a checkpoint, then a resumed second epoch: the same average as the straight run
    first, _ = _fit(tmp_path / "b", 1)
    ckpt = tmp_path / "b" / "one_epoch.ckpt"
    first.save_checkpoint(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["callbacks"]
    assert any("ema_state_dict" in state for state in saved.values())  # the EMA weights are in the checkpoint
    _, resumed = _fit(tmp_path / "b", 2, str(ckpt))
    again = resumed.state_dict()["ema_state_dict"]
    assert all(torch.equal(again[k], got[k]) for k in got)
    assert resumed.best == ema.best
