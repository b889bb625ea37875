"""Checkpoints are written with torch.save straight to the file (no in-memory copies), atomically."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import hydra
import pytest
import torch
from lightning.fabric.utilities.cloud_io import _atomic_save

from runner.checkpoint_io import LocalAtomicCheckpointIO


def _checkpoint(mb: int = 16) -> dict:
    return {"state_dict": {"w": torch.arange(mb * 2**18, dtype=torch.float32)}, "epoch": 3}


def _peak_python_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_saves_without_a_copy_of_the_checkpoint_in_memory(tmp_path: Path) -> None:
    ckpt = _checkpoint(16)
    size = ckpt["state_dict"]["w"].numel() * 4
    io = LocalAtomicCheckpointIO()
    ours = _peak_python_bytes(lambda: io.save_checkpoint(ckpt, tmp_path / "a.ckpt"))
    lightnings = _peak_python_bytes(lambda: _atomic_save(ckpt, tmp_path / "b.ckpt"))
    assert lightnings > size  # Lightning's own path: the whole checkpoint in a BytesIO, then copied out
    assert ours < size / 8
    loaded = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], ckpt["state_dict"]["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "b.ckpt"]  # no temporary file left


def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    io = LocalAtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(_checkpoint(1), target)
    before = target.read_bytes()
    with pytest.raises(Exception):
        io.save_checkpoint({"bad": lambda: None}, target)  # a lambda cannot be pickled
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_the_default_trainer_writes_checkpoints_through_it(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(job=True)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy.checkpoint_io, LocalAtomicCheckpointIO)
    ddp = compose_cfg("trainer=ddp_cpu", job=True)
    assert [p["_target_"] for p in ddp.trainer.plugins] == ["runner.checkpoint_io.LocalAtomicCheckpointIO"]
