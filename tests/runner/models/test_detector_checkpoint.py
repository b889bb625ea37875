"""load_detector_checkpoint: this project's detector .ckpt -> the module (interpret's checkpoint loader)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from runner.models import ImageClassifier, ObjectDetector
from runner.models.detector_checkpoint import load_detector_checkpoint


def _save(model: pl.LightningModule, path: Path) -> Path:
    """A checkpoint with the keys Lightning's ModelCheckpoint writes and load_from_checkpoint reads."""
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


def test_a_detector_checkpoint_loads_on_cpu_in_eval_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ObjectDetector(backbone="resnet18", num_classes=3, image_size=64, out_indices=(1, 2))
    model = load_detector_checkpoint(_save(source, tmp_path / "detector.ckpt"))
    assert isinstance(model, ObjectDetector) and not model.training
    assert next(model.parameters()).device == torch.device("cpu")
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_other_files_are_refused_naming_the_path(tmp_path: Path) -> None:
    classifier = _save(ImageClassifier(backbone="resnet18", num_classes=3, image_size=32), tmp_path / "classifier.ckpt")
    with pytest.raises(ValueError, match=r"classifier\.ckpt.* not a checkpoint of runner.models.ObjectDetector"):
        load_detector_checkpoint(classifier)
    state = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(1)}, state)
    with pytest.raises(ValueError, match=r"weights\.pth"):
        load_detector_checkpoint(state)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.ckpt"):
        load_detector_checkpoint(garbage)
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        load_detector_checkpoint(tmp_path / "nope.ckpt")


def test_it_is_interprets_checkpoint_loader_entry_point() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="interpret.checkpoint_loaders") if e.name == "vision-runner"]
    assert entry.load() is load_detector_checkpoint
