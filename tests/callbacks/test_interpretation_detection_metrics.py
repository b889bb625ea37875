"""InterpretationCallback's explanation metrics on a detector, on one real Trainer fit.

The maths (each detection's map against the ground-truth box it overlaps most) is tested without a
Trainer in tests/interpret/metrics/test_training_metrics.py; here: run.py's FCOS detector trained
briefly on shapes_detection, its per-detection scores read back from csv/metrics.csv and
TensorBoard under the classification keys, the line saying what a detector is not scored on, and
training left bit-identical by the scoring.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from tests.support.callback_fits import csv_rows, read_tensorboard_scalars

from callbacks import InterpretationCallback
from interpret.metrics.training import DETECTION_METRICS

KEY = "interpretation/gradcam"
EPOCHS = 2


def _fit(root: Path, callbacks: list[Any], loggers: list[Any]) -> pl.LightningModule:
    """run.py's FCOS on shapes_detection at 64 px, 2 epochs of 8 steps (enough for detections >= 0.3 on the boxes)."""
    from runner.data import ShapesDetectionDataModule
    from runner.models import ObjectDetector

    pl.seed_everything(0, workers=True)
    data = ShapesDetectionDataModule(num_train=128, num_val=16, num_test=8, image_size=64, batch_size=16, seed=5)
    model = ObjectDetector(backbone="resnet18", num_classes=4, image_size=64, out_indices=(1, 2))
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=EPOCHS, default_root_dir=str(root), callbacks=callbacks,
        logger=loggers, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=1,
    )
    trainer.fit(model, data)
    return model


@pytest.fixture(scope="module")
def detector_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("detector_scores")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions on a busy 2-core machine
    cb = InterpretationCallback(log_every_n_epochs=1, log_at_end=False, num_samples=4, detection_threshold=0.3)
    loggers = [pl.loggers.CSVLogger(str(root), name="csv"), pl.loggers.TensorBoardLogger(str(root), name="tb")]
    try:
        with _captured("callbacks.interpretation") as said:
            model = _fit(root, [cb], loggers)
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "callback": cb, "model": model, "said": said}


class _captured:
    """The messages of one logger while the block runs (pytest's caplog is function-scoped)."""

    def __init__(self, name: str) -> None:
        self.logger, self.messages = logging.getLogger(name), []
        self.handler = logging.Handler(logging.INFO)
        self.handler.emit = lambda record: self.messages.append(record.getMessage())  # type: ignore[method-assign]

    def __enter__(self) -> list[str]:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self.messages

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


@pytest.mark.slow
def test_detection_scores_logged_per_detection_against_its_box(detector_fit: dict[str, Any]) -> None:
    root, cb = detector_fit["root"], detector_fit["callback"]
    rows = csv_rows(root / "csv")
    energy = [float(r[f"{KEY}/energy_in_mask"]) for r in rows if r.get(f"{KEY}/energy_in_mask")]
    pointing = [float(r[f"{KEY}/pointing_game"]) for r in rows if r.get(f"{KEY}/pointing_game")]
    print(f"detector, {EPOCHS} epochs: energy in box {energy}, pointing game {pointing}, history {cb.score_history}")
    assert len(energy) == EPOCHS and all(0.0 < e <= 1.0 for e in energy), energy
    assert len(pointing) == EPOCHS and all(0.0 <= p <= 1.0 for p in pointing), pointing
    assert pointing[-1] >= 0.5  # GradCAM of the head's tower points at the object of its box
    for name in DETECTION_METRICS:
        values = [float(r[f"{KEY}/{name}"]) for r in rows if r.get(f"{KEY}/{name}")]
        assert values and all(math.isfinite(v) for v in values), name
        assert len(values) == (1 if name == "drift" else EPOCHS), name  # drift: from the second log on
        tb = read_tensorboard_scalars(root / "tb", f"{KEY}/{name}")
        assert [round(v, 5) for _, v in tb] == [round(v, 5) for v in values], name
    assert not any(r.get(f"{KEY}/deletion_auc") or r.get(f"{KEY}/insertion_auc") for r in rows)
    said = [m for m in detector_fit["said"] if "not scored" in m]
    assert len(said) == 1 and "deletion_auc, insertion_auc" in said[0], detector_fit["said"]
    # the boxes each map is scored against: the datamodule's sample targets; drift's maps per box resume
    assert cb.truth_boxes is not None and len(cb.truth_boxes) == 4
    assert cb._previous_maps is not None and cb._previous_maps.shape[0] == sum(len(b) for b in cb.truth_boxes)
    again = InterpretationCallback()
    again.load_state_dict(cb.state_dict())
    assert again.score_history == cb.score_history
    assert torch.equal(again._previous_maps.nan_to_num(-1), cb._previous_maps.nan_to_num(-1))


@pytest.mark.slow
def test_explaining_and_scoring_a_detector_leaves_it_and_the_rng_as_they_were(detector_fit: dict[str, Any]) -> None:
    """Training stays bit-identical: the model's weights, modes and gradients and the RNG are untouched."""
    cb, model = detector_fit["callback"], detector_fit["model"]
    model.train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]  # the last step's
    rng = torch.get_rng_state()
    scored = len(cb.score_history)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cb.log_interpretation(model.trainer, model)
    finally:
        torch.set_num_threads(threads)
    assert len(cb.score_history) == scored + 1 and "energy_in_mask" in cb.score_history[-1]
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    for p, grad in zip(model.parameters(), grads, strict=True):
        assert (p.grad is None and grad is None) or torch.equal(p.grad, grad)
    after = model.state_dict()
    assert all(torch.equal(value, after[name]) for name, value in before.items())
