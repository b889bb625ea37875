"""GramMatrixCallback sorted by class: real (tiny) fits read back from TensorBoard, PNGs and CSV."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks import GramMatrixCallback
from interpret.class_structure import class_separation
from interpret.stats import gram_to_show
from tests.support.callback_fits import (
    DumpState,
    TinyData,
    TinyNet,
    csv_rows,
    read_tensorboard_images,
    read_tensorboard_scalars,
)
from tests.support.gram_classes import PartlyLabelledData, SoftLabelData, band_runs, expected_runs

SEPARATION = "gram_matrix/class_separation"


@pytest.fixture(scope="module")
def sorted_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One fit (TensorBoard): labels from ``batch[1]``; lr 0, so the features can be recomputed."""
    import lightning.pytorch as pl

    root = tmp_path_factory.mktemp("gram_sorted")
    torch.manual_seed(0)
    model, data = TinyNet(lr=0.0), TinyData(n=64, batch_size=32)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, default_root_dir=str(root), limit_train_batches=2,
        limit_val_batches=0, logger=pl.loggers.TensorBoardLogger(str(root), name="tb"),
        callbacks=[GramMatrixCallback(log_every_n_steps=2, max_samples=64)], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
    return {"root": root, "model": model, "data": data}


def test_logged_gram_is_sorted_by_class_with_bands_and_class_separation(sorted_fit) -> None:
    root, model, data = sorted_fit["root"], sorted_fit["model"], sorted_fit["data"]
    labels = data.labels[32:64]  # step 2 is the second batch
    [image] = read_tensorboard_images(root, "gram_matrix")
    png = np.asarray(Image.open(root / "images" / "gram_matrix" / "step_000002.png"))
    assert np.array_equal(image[..., :3], png[..., :3])
    want = expected_runs(labels.tolist(), 32)
    assert len(want) == len(set(labels.tolist())) >= 5
    assert band_runs(image, axis=0) == want and band_runs(image, axis=1) == want
    with torch.no_grad():
        features = model.features(data.images[32:64])
    [(step, value)] = read_tensorboard_scalars(root, SEPARATION)
    assert step == 2
    assert value == pytest.approx(class_separation(gram_to_show(features), labels), abs=1e-5)
    assert read_tensorboard_scalars(root, "gram_matrix/num_samples") == [(2, 32.0)]


class ParityLabels(TinyNet):
    """``training_step`` returns its own ``"labels"`` (the parity of the class): they win over ``batch[1]``."""

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().training_step(batch, batch_idx)
        out["labels"] = batch[1] % 2
        return out


def test_labels_from_the_training_step_outputs_win_over_the_batch(trainer_factory, tmp_path: Path) -> None:
    """A run shorter than log_every_n_steps: the last batch, with its labels, is logged at the end."""
    trainer = trainer_factory([GramMatrixCallback(log_every_n_steps=100, max_samples=64)], limit_train_batches=1)
    data = TinyData(n=32, batch_size=32)
    with pytest.warns(UserWarning, match="fewer than log_every_n_steps=100"):
        trainer.fit(ParityLabels(), data)
    image = np.asarray(Image.open(tmp_path / "images" / "gram_matrix" / "step_000001.png"))
    assert band_runs(image) == expected_runs((data.labels % 2).tolist(), 32)  # 2 classes, not 10
    [row] = [r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/num_samples")]
    assert int(row["step"]) == 1 and math.isfinite(float(row[SEPARATION]))


def test_without_labels_batch_order_no_bands_said_once(trainer_factory, tmp_path: Path, caplog) -> None:
    trainer = trainer_factory([GramMatrixCallback(log_every_n_steps=1, max_samples=16)], limit_train_batches=3)
    with caplog.at_level(logging.INFO, logger="callbacks.gram_matrix"):
        trainer.fit(TinyNet(), SoftLabelData(n=48, batch_size=16))
    said = [r for r in caplog.records if "no per-sample class labels" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    pngs = sorted((tmp_path / "images" / "gram_matrix").glob("*.png"))
    assert len(pngs) == 3 and all(band_runs(np.asarray(Image.open(p))) == [] for p in pngs)
    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/num_samples")]
    assert len(rows) == 3 and not any(r.get(SEPARATION) for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_labels_gathered_across_ranks_and_skipped_together_when_one_rank_has_none(
    trainer_factory, tmp_path: Path
) -> None:
    """2 ranks with 8 and 5 samples; at step 2 rank 1's batch has no integer labels: every rank
    skips the labels' gather (no hang), that matrix is unsorted; steps 1 and 3 are sorted."""
    data = PartlyLabelledData(batch_sizes=(8, 5), batches=3, soft_rank=1, soft_batch=1)
    callbacks = [GramMatrixCallback(log_every_n_steps=1, max_samples=64), DumpState(str(tmp_path / "state"))]
    ddp = trainer_factory(
        callbacks, strategy="ddp_spawn", devices=2, limit_val_batches=0, use_distributed_sampler=False
    )
    model = TinyNet(lr=0.0)
    ddp.fit(model, data)
    state = [json.loads((tmp_path / "state" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["global_step"] for s in state] == [3, 3]
    rows = {int(r["step"]): r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/num_samples")}
    assert sorted(rows) == [1, 2, 3] and not rows[2].get(SEPARATION)
    images = {s: np.asarray(Image.open(tmp_path / "images" / "gram_matrix" / f"step_{s:06d}.png")) for s in rows}
    assert band_runs(images[2]) == []
    for step in (1, 3):
        batches = [data.rank_batch(r, step - 1) for r in (0, 1)]
        labels = torch.cat([y for _, y in batches])
        assert band_runs(images[step]) == expected_runs(labels.tolist(), 13)
        with torch.no_grad():
            features = torch.cat([model.features(x) for x, _ in batches])
        want = class_separation(gram_to_show(features), labels)
        assert float(rows[step][SEPARATION]) == pytest.approx(want, abs=1e-5)


def test_label_key_must_be_a_key() -> None:
    with pytest.raises(ValueError, match="`label_key` must be a key of the training_step output dict, got ''"):
        GramMatrixCallback(label_key="")
