"""InterpretationCallback's explanation metrics and shortcut alarm, on real Trainer fits.

The maths is tested without a Trainer in tests/interpret/metrics/test_training_metrics.py; here:
the scalars as the loggers store them (csv/metrics.csv, TensorBoard), the argument checks, the
no-ground-truth line, and the alarm on a real shortcut/clean pair of trainings (shapes with a
class-coded patch in 90% of the training images, and without).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from tests.support.callback_fits import TinyData, TinyNet, csv_rows, read_tensorboard_scalars

from callbacks import InterpretationCallback
from interpret.metrics.training import TRAINING_METRICS

KEY = "interpretation/gradcam"


def _shapes(shortcut: str | None, num_train: int = 320, seed: int = 3, sample_split: str = "train") -> Any:
    """Shapes at 32 px; the sample images are the first training images (those that carry the patch)."""
    from runner.data import ShapesDataModule

    return ShapesDataModule(num_train=num_train, num_val=16, num_test=8, image_size=32, batch_size=32,
                            seed=seed, shortcut=shortcut, shortcut_p=0.9, sample_split=sample_split)


def _classifier() -> Any:
    from runner.models.classifier import ImageClassifier

    return ImageClassifier(backbone="resnet18", num_classes=4, image_size=32)


def _fit(
    root: Path, data: Any, epochs: int, loggers: list[Any] | None = None, **callback: Any
) -> InterpretationCallback:
    pl.seed_everything(0, workers=True)
    cb = InterpretationCallback(log_every_n_epochs=1, log_at_end=False, **callback)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, default_root_dir=str(root), callbacks=[cb],
        logger=loggers if loggers is not None else pl.loggers.CSVLogger(str(root), name="csv"),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=1, log_every_n_steps=1,
    )
    trainer.fit(_classifier(), data)
    return cb


@pytest.mark.slow
def test_scores_logged_to_csv_and_tensorboard_each_time_it_explains(tmp_path: Path) -> None:
    loggers = [pl.loggers.CSVLogger(str(tmp_path), name="csv"),
               pl.loggers.TensorBoardLogger(str(tmp_path), name="tb")]
    cb = _fit(tmp_path, _shapes(None, num_train=64, sample_split="val"), epochs=2, loggers=loggers, num_samples=6)
    rows = csv_rows(tmp_path / "csv")
    for name in TRAINING_METRICS:
        values = [float(r[f"{KEY}/{name}"]) for r in rows if r.get(f"{KEY}/{name}")]
        assert values and all(math.isfinite(v) for v in values), name
        # drift compares with the previous log: none at the first
        assert len(values) == (1 if name == "drift" else 2), name
        tb = read_tensorboard_scalars(tmp_path / "tb", f"{KEY}/{name}")
        assert [round(v, 5) for _, v in tb] == [round(v, 5) for v in values], name
    energy = [float(r[f"{KEY}/energy_in_mask"]) for r in rows if r.get(f"{KEY}/energy_in_mask")]
    assert all(0.0 <= e <= 1.0 for e in energy)
    assert [float(r[f"{KEY}/shortcut_alarm"]) for r in rows if r.get(f"{KEY}/shortcut_alarm")] in ([0.0, 0.0], [0.0, 1.0])
    assert cb.masks is not None and cb.masks.shape == (6, 32, 32)
    assert [h["epoch"] for h in cb.score_history] == [0.0, 1.0] and "accuracy" in cb.score_history[-1]
    # resumable: the history, the alarm and the previous maps go into the checkpoint
    state = cb.state_dict()
    again = InterpretationCallback()
    again.load_state_dict(state)
    assert again.score_history == cb.score_history and torch.equal(again._previous_maps, cb._previous_maps)
    again.load_state_dict({"last_logged_step": 3})  # a checkpoint from before the metrics
    assert again.score_history == [] and again.alarm_epoch is None


def test_no_ground_truth_is_said_once_and_the_other_metrics_still_run(tmp_path: Path, caplog) -> None:
    data = TinyData(n=16)
    cb = InterpretationCallback(sample_images=data.images[:4], metrics=["energy_in_mask", "concentration"],
                                log_every_n_epochs=1, log_at_end=False)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, default_root_dir=str(tmp_path), callbacks=[cb],
                         logger=pl.loggers.CSVLogger(str(tmp_path), name="csv"), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_train_batches=1)
    with caplog.at_level(logging.INFO, logger="callbacks.interpretation"):
        trainer.fit(TinyNet(), data.train_dataloader())
    said = [r for r in caplog.records if "no ground-truth masks" in r.getMessage()]
    assert len(said) == 1 and "energy_in_mask skipped" in said[0].getMessage()
    rows = csv_rows(tmp_path / "csv")
    assert len([r for r in rows if r.get(f"{KEY}/concentration")]) == 2
    assert not any(r.get(f"{KEY}/energy_in_mask") for r in rows)


def test_metrics_off_logs_no_scalars(tmp_path: Path) -> None:
    data = TinyData(n=16)
    cb = InterpretationCallback(sample_images=data.images[:4], metrics=[], log_every_n_epochs=1)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, default_root_dir=str(tmp_path), callbacks=[cb],
                         logger=pl.loggers.CSVLogger(str(tmp_path), name="csv"), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_train_batches=1,
                         log_every_n_steps=1)
    trainer.fit(TinyNet(), data.train_dataloader())
    assert cb.num_logged >= 1 and cb.score_history == []
    # TinyNet logs train/loss only, so that the csv exists; none of the callback's scalars are in it
    header = next((tmp_path / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    assert "train/loss" in header and KEY not in header


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ["drift", "foo"]}, r"^`metrics` can be deletion_auc, insertion_auc, .*, got 'foo'$"),
        ({"metrics": "drift"}, "`metrics` must be a list"),
        ({"energy_threshold": 1.5}, r"^`energy_threshold` must be a number in \[0, 1\], got 1.5$"),
        ({"agreement_threshold": -0.1}, r"^`agreement_threshold` must be a number in \[0, 1\]"),
        ({"min_accuracy": 2}, r"^`min_accuracy` must be a number in \[0, 1\]"),
        ({"accuracy_key": ""}, "`accuracy_key`"),
    ],
)
def test_bad_scoring_arguments_fail_at_init_naming_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InterpretationCallback(**kwargs)


def test_bad_shortcut_data_arguments_name_the_key() -> None:
    from runner.data import ShapesDataModule

    with pytest.raises(ValueError, match=r"^data.shortcut can be null or patch, got 'sticker'$"):
        ShapesDataModule(shortcut="sticker")
    with pytest.raises(ValueError, match=r"^data.shortcut_p must be a number in \[0, 1\], got 1.2$"):
        ShapesDataModule(shortcut="patch", shortcut_p=1.2)


def test_the_patch_is_in_the_training_images_only() -> None:
    plain, patched = _shapes(None, num_train=64), _shapes("patch", num_train=64)
    plain.setup("fit")
    patched.setup("fit")
    changed = (plain.train_set.tensors[0] != patched.train_set.tensors[0]).flatten(1).any(dim=1)
    assert 0.75 <= changed.float().mean() <= 1.0  # 90% of them, drawn
    corner = (plain.train_set.tensors[0] != patched.train_set.tensors[0])[:, :, 5:, :].any()
    assert not corner  # nothing below the 4-pixel patch at 32 px changes
    for split in ("val_set", "test_set"):
        assert torch.equal(getattr(plain, split).tensors[0], getattr(patched, split).tensors[0])


# ------------------------------------------------------------------ the alarm on real training
class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def shortcut_and_clean(tmp_path_factory) -> dict[str, tuple[InterpretationCallback, list[dict[str, str]], list[str]]]:
    """One reduced training each on shapes with the patch shortcut and on clean shapes (4 epochs of
    320 images at 32 px, resnet18, the samples the first 8 training images): callback, csv rows, warnings."""
    runs = {}
    logger = logging.getLogger("callbacks.interpretation")
    for name, shortcut in (("shortcut", "patch"), ("clean", None)):
        root = tmp_path_factory.mktemp(name)
        kept = _Kept()
        logger.addHandler(kept)
        try:
            cb = _fit(root, _shapes(shortcut), epochs=4)
        finally:
            logger.removeHandler(kept)
        runs[name] = (cb, csv_rows(root / "csv"), kept.messages)
    return runs


@pytest.mark.slow
def test_alarm_fires_on_the_shortcut_run(shortcut_and_clean) -> None:
    cb, rows, warned = shortcut_and_clean["shortcut"]
    assert cb.alarm_epoch is not None
    flags = [float(r[f"{KEY}/shortcut_alarm"]) for r in rows if r.get(f"{KEY}/shortcut_alarm")]
    assert 1.0 in flags and flags[: flags.index(1.0)] == [0.0] * flags.index(1.0)
    alarms = [m for m in warned if "shortcut alarm" in m]  # once, with the epoch and the evidence
    assert len(alarms) == 1 and f"shortcut alarm at epoch {cb.alarm_epoch}:" in alarms[0]
    assert "location_agreement" in alarms[0] and "training accuracy is" in alarms[0]


@pytest.mark.slow
def test_alarm_silent_on_the_clean_run(shortcut_and_clean) -> None:
    cb, rows, warned = shortcut_and_clean["clean"]
    assert cb.alarm_epoch is None and not [m for m in warned if "shortcut alarm" in m]
    flags = [float(r[f"{KEY}/shortcut_alarm"]) for r in rows if r.get(f"{KEY}/shortcut_alarm")]
    assert flags and set(flags) == {0.0}
    # what separates them: the maps of different images agree on one spot (the patch) only with the shortcut
    shortcut = shortcut_and_clean["shortcut"][0].score_history
    assert all(h["location_agreement"] > 0.5 for h in shortcut)
    assert all(h["location_agreement"] < 0.3 for h in cb.score_history)
    assert cb.score_history[-1]["accuracy"] > cb.score_history[0]["accuracy"]  # it did learn
