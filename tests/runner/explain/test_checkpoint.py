"""ckpt_path -> a checkpoint file: a file, a run directory (best, else last), a missing path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from runner.explain.checkpoint import find_checkpoint, load_checkpoint_model, run_dir_of, saved_config, saved_config_file


def _run_dir(tmp_path: Path, *names: str) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in names:
        (run_dir / "checkpoints" / name).write_bytes(b"x")
    return run_dir


def test_find_checkpoint_prefers_best_then_last(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(b"x")
    assert find_checkpoint(str(run_dir)) == last  # only last: last
    best = run_dir / "checkpoints" / "epoch_003.ckpt"
    best.write_bytes(b"x")
    os.utime(best, (1, 1))  # older than last.ckpt, still the best
    assert find_checkpoint(str(run_dir)) == best
    other = run_dir / "checkpoints" / "epoch_001.ckpt"
    other.write_bytes(b"x")
    (run_dir / "metrics.json").write_text(json.dumps({"best_model_path": str(other)}))
    assert find_checkpoint(str(run_dir)) == other  # what the run recorded as best
    assert find_checkpoint(str(last)) == last  # a file is that file


def test_find_checkpoint_errors_name_ckpt_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ckpt_path: no such checkpoint file or run directory"):
        find_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="ckpt_path: run directory .* has no checkpoint"):
        find_checkpoint(str(tmp_path))


def test_metrics_json_names_the_best_even_after_a_move(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, "last.ckpt", "epoch_001.ckpt", "epoch_005.ckpt")
    (run_dir / "metrics.json").write_text(json.dumps({"best_model_path": "/elsewhere/checkpoints/epoch_001.ckpt"}))
    assert find_checkpoint(str(run_dir)) == run_dir / "checkpoints" / "epoch_001.ckpt"
    (run_dir / "metrics.json").write_text("not json")  # unreadable: the newest non-last checkpoint
    assert find_checkpoint(str(run_dir)).name in {"epoch_001.ckpt", "epoch_005.ckpt"}


def test_blank_ckpt_path_is_required() -> None:
    with pytest.raises(ValueError, match="ckpt_path is required"):
        find_checkpoint("  ")


def test_run_dir_and_saved_config(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path, "last.ckpt")
    assert run_dir_of(run_dir / "checkpoints" / "last.ckpt") == run_dir
    assert run_dir_of(tmp_path / "model.ckpt") == tmp_path
    assert saved_config(run_dir) is None and saved_config_file(run_dir) is None
    (run_dir / "config_resolved.yaml").write_text("model:\n  backbone: resnet18\n")
    assert saved_config_file(run_dir) == run_dir / "config_resolved.yaml"
    assert saved_config(run_dir).model.backbone == "resnet18"


def test_unreadable_or_foreign_checkpoints_name_ckpt_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="ckpt_path: .* is not a readable checkpoint"):
        load_checkpoint_model(junk, None, torch.device("cpu"))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": {}}, foreign)
    with pytest.raises(ValueError, match="no state_dict"):
        load_checkpoint_model(foreign, None, torch.device("cpu"))
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, bare)
    with pytest.raises(ValueError, match="no model hyperparameters inside it"):
        load_checkpoint_model(bare, None, torch.device("cpu"))


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_a_checkpoint_without_its_run_config_is_rebuilt_from_its_hyperparameters(tmp_path: Path, task: str) -> None:
    """No run config: the checkpoint's own hyperparameters (a detector through load_detector_checkpoint);
    the backbone file it was first built from is not needed (its weights are in the checkpoint)."""
    import lightning.pytorch as pl

    from runner.models import ImageClassifier, ObjectDetector

    torch.manual_seed(0)
    if task == "detection":
        source: pl.LightningModule = ObjectDetector(backbone="resnet18", num_classes=3, image_size=64, out_indices=(1, 2))
    else:
        source = ImageClassifier(backbone="resnet18", num_classes=3, image_size=32)
    hparams = {**source.hparams, "pretrained": True, "weights_path": str(tmp_path / "moved_away.safetensors")}
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": pl.__version__}, ckpt)
    model, checkpoint = load_checkpoint_model(ckpt, None, torch.device("cpu"))
    assert type(model) is type(source) and not model.training
    assert checkpoint["hyper_parameters"]["weights_path"] == hparams["weights_path"]  # the checkpoint as it was read
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
