"""GramMatrixCallback in real (tiny) fits, and its heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks import GramMatrixCallback
from callbacks.gram_matrix import render_gram
from tests.support.callback_fits import TinyData, TinyNet, csv_rows


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


def test_render_gram_draws_an_rgb_image() -> None:
    img = render_gram(torch.eye(8) * 2 - 1, "title")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 200


def test_gram_matrix_short_run_warns_at_start_and_logs_the_centred_matrix_at_the_end(trainer_factory, tmp_path: Path) -> None:
    """Issue 22: at its defaults (every 100 steps) a short run logged nothing and said nothing."""
    cb = GramMatrixCallback(max_samples=16)
    trainer = trainer_factory([cb], limit_train_batches=3, limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"about 3 optimizer steps, fewer than log_every_n_steps=100.*"
                                         r"pass GramMatrixCallback\(log_every_n_steps=\.\.\.\)"):
        trainer.fit(TinyNet(), TinyData(n=48, batch_size=16))
    assert sorted(p.name for p in (tmp_path / "images" / "gram_matrix").glob("*.png")) == ["step_000003.png"]
    assert cb.state_dict()["last_logged_step"] == 3


def test_gram_hints_name_the_argument_or_the_config_key(trainer_factory) -> None:
    outside = GramMatrixCallback(log_every_n_steps=1)
    with pytest.warns(UserWarning, match=r"return \{'loss': loss, 'features': features\} from training_step"):
        trainer_factory([outside], limit_train_batches=1, limit_val_batches=0).fit(LossOnly(), TinyData(n=16))
    runner = GramMatrixCallback(log_every_n_steps=1, feature_key="emb", config_key="callbacks.gram_matrix")
    with pytest.warns(UserWarning, match=r"set callbacks\.gram_matrix\.feature_key to one of them"):
        trainer_factory([runner], limit_train_batches=1, limit_val_batches=0).fit(TinyNet(), TinyData(n=16))

