"""Every resume drops the csv rows logged after its checkpoint (runner.launch.requeue)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from runner.launch.requeue import drop_rows_after_checkpoint

FIELDS = ["epoch", "step", "train/loss_step", "val/acc", "lr-AdamW"]


def test_rows_after_the_checkpoint_are_dropped_those_before_kept(tmp_path: Path) -> None:
    """Checkpoint at the end of epoch 1 (global step 10, 5 steps an epoch); the run went on into epoch 2."""
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    torch.save({"epoch": 1, "global_step": 10}, ckpt)
    rows = [{"epoch": 0, "step": 0, "lr-AdamW": 0.1}, {"epoch": 0, "step": 4, "val/acc": 0.5},
            {"epoch": 1, "step": 9, "train/loss_step": 1.0}, {"epoch": 1, "step": 9, "val/acc": 0.6},
            {"epoch": 2, "step": 10, "lr-AdamW": 0.05}, {"epoch": 2, "step": 11, "train/loss_step": 0.9},
            {"epoch": "", "step": 10, "lr-AdamW": 0.05}]
    path = tmp_path / "csv" / "metrics.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    assert drop_rows_after_checkpoint(ckpt, tmp_path) == (1, 10, 3)
    with open(path, newline="") as fh:
        kept = list(csv.DictReader(fh))
    assert [(r["epoch"], r["step"]) for r in kept] == [("0", "0"), ("0", "4"), ("1", "9"), ("1", "9")]
    assert drop_rows_after_checkpoint(ckpt, tmp_path) == (1, 10, 0)  # twice is once
