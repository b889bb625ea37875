"""GramMatrixCallback, TerminateOnNaN and GradNormMonitor in real (tiny) fits."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.support.callback_fits import PoisonWeights, TinyData, TinyNet
from PIL import Image

from callbacks import GradNormMonitor, GramMatrixCallback, TerminateOnNaN


def csv_rows(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(next(root.rglob("metrics.csv")).open()))


# ------------------------------------------------------------------ gram matrix
def test_gram_matrix_logged_every_n_steps(trainer_factory, tmp_path: Path) -> None:
    cb = GramMatrixCallback(log_every_n_steps=2, max_samples=8)
    trainer = trainer_factory([cb], limit_train_batches=5, limit_val_batches=0)
    trainer.fit(TinyNet(), TinyData(n=80, batch_size=16))
    pngs = sorted(p.name for p in (tmp_path / "images" / "gram_matrix").glob("*.png"))
    assert pngs == ["step_000002.png", "step_000004.png"]
    img = np.asarray(Image.open(tmp_path / "images" / "gram_matrix" / "step_000002.png"))
    assert img.ndim == 3 and img.shape[0] > 200
    assert float(trainer.callback_metrics["gram_matrix/num_samples"]) == 8  # capped from 16
    assert -1 <= float(trainer.callback_metrics["gram_matrix/mean_offdiag"]) <= 1
    assert 1 <= float(trainer.callback_metrics["gram_matrix/effective_rank"]) <= 8
    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/mean_offdiag")]
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert cb.state_dict() == {"last_logged_step": 4, "collapse_warned": False}
    for key in ("centered_mean_offdiag", "centered_effective_rank"):
        assert all(r[f"gram_matrix/{key}"] for r in rows), key


class CollapsedFeatures(TinyNet):
    """Every sample gets the same (positive) feature vector: a fully collapsed representation."""

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().training_step(batch, batch_idx)
        out["features"] = torch.linspace(1.0, 2.0, 16).expand(out["features"].shape[0], 16).clone()
        return out


def test_gram_collapse_warning_fires_once_with_the_step(trainer_factory, tmp_path: Path, caplog) -> None:
    cb = GramMatrixCallback(log_every_n_steps=2, collapse_threshold=2.0)
    trainer = trainer_factory([cb], limit_train_batches=6, limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"collapse at global step 2: centred effective rank 0\.000 < collapse_threshold 2") as rec:
        trainer.fit(CollapsedFeatures(), TinyData(n=96, batch_size=16))
    assert sum("representation collapse" in str(w.message) for w in rec) == 1  # once, though steps 4, 6 collapse too
    assert cb.collapse_warned and cb.state_dict()["collapse_warned"] is True
    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/mean_offdiag")]
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(float(r["gram_matrix/mean_offdiag"]) == pytest.approx(1.0, abs=1e-6) for r in rows)
    assert all(float(r["gram_matrix/centered_effective_rank"]) == 0.0 for r in rows)


def test_gram_no_collapse_warning_on_healthy_features(trainer_factory, recwarn) -> None:
    cb = GramMatrixCallback(log_every_n_steps=2, collapse_threshold=2.0)
    trainer = trainer_factory([cb], limit_train_batches=4, limit_val_batches=0)
    trainer.fit(TinyNet(), TinyData(n=64, batch_size=16))
    assert not any("collapse" in str(w.message) for w in recwarn.list)
    assert not cb.collapse_warned
    assert float(trainer.callback_metrics["gram_matrix/centered_effective_rank"]) > 2.0


class LossOnly(TinyNet):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return super().training_step(batch, batch_idx)["loss"]


class ScalarFeatures(TinyNet):
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().training_step(batch, batch_idx)
        out["features"] = out["features"].sum()
        return out


@pytest.mark.parametrize(
    ("model", "key", "match"),
    [
        (TinyNet(), "embeddings", r"no 'embeddings'; available keys: loss, logits, features, targets"),
        (LossOnly(), "features", r"no 'features'; available keys: loss;"),
        (ScalarFeatures(), "features", r"must be a float tensor \(B, D\), got \(\)"),
    ],
)
def test_gram_matrix_warns_once_and_never_interrupts(trainer_factory, tmp_path: Path, model, key, match) -> None:
    trainer = trainer_factory([GramMatrixCallback(log_every_n_steps=1, feature_key=key)], limit_train_batches=4)
    with pytest.warns(UserWarning, match=match) as record:
        trainer.fit(model, TinyData(n=64))
    assert sum("GramMatrixCallback" in str(w.message) for w in record) == 1
    assert trainer.global_step == 4
    assert not (tmp_path / "images").exists()


def test_gram_matrix_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        GramMatrixCallback(max_samples=1)
    with pytest.raises(ValueError, match="log_every_n_steps"):
        GramMatrixCallback(log_every_n_steps=0)
    with pytest.raises(ValueError, match="collapse_threshold"):
        GramMatrixCallback(collapse_threshold=0)


# ------------------------------------------------------------------ NaN guard
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


# ------------------------------------------------------------------ gradient norms
def test_grad_norms_logged_every_n_steps(trainer_factory, tmp_path: Path) -> None:
    seen: dict[int, float] = {}

    class Probe(TinyNet):
        def on_before_optimizer_step(self, optimizer: Any) -> None:
            grads = [p.grad.flatten() for p in self.parameters() if p.grad is not None]
            seen[self.global_step + 1] = float(torch.cat(grads).norm())  # the step this update completes

    trainer = trainer_factory([GradNormMonitor(log_every_n_steps=2)], limit_train_batches=5, limit_val_batches=0)
    trainer.fit(Probe(), TinyData(n=80))
    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("grad_norm/total")]
    assert [int(r["step"]) for r in rows] == [2, 4]  # steps n, 2n, ... (issue 7 item 9), not 0
    for r in rows:
        assert float(r["grad_norm/total"]) == pytest.approx(seen[int(r["step"])], rel=1e-5)
        groups = [float(r[f"grad_norm/{g}"]) for g in ("conv1", "conv2", "head")]
        assert math.sqrt(sum(g * g for g in groups)) == pytest.approx(float(r["grad_norm/total"]), rel=1e-5)


def test_grad_norm_groups_below_a_shared_prefix() -> None:
    from runner.models.classifier import ImageClassifier

    model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32)
    cb = GradNormMonitor()
    cb.setup(None, model, "fit")  # type: ignore[arg-type]
    groups = {cb.group_name(n) for n, _ in model.named_parameters()}
    assert {"backbone.layer1", "backbone.layer4", "backbone.fc", "backbone.conv1"} <= groups


@pytest.mark.parametrize("norm_type", [0, -1, "two", None])
def test_grad_norm_bad_norm_type(norm_type: Any) -> None:
    with pytest.raises(ValueError, match="number > 0 or 'inf'"):
        GradNormMonitor(norm_type=norm_type)
