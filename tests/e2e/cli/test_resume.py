"""Resume end to end: train 2 epochs, resume to 4 in place, as the README shows.

`python run.py ... hydra.run.dir=<run>` then `python run.py ckpt_path=last trainer.max_epochs=4
hydra.run.dir=<run>`, with the default callbacks and the csv logger.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

BASE_LR = 0.002  # conf/model/classifier.yaml
# debug=limit: 5 training and 2 validation batches per epoch
ARGS = ("debug=limit", "logger=csv")


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _cosine(epoch: int, t_max: int) -> float:
    return BASE_LR * (1 + math.cos(math.pi * epoch / t_max)) / 2


def test_resume_in_place_keeps_history_schedule_and_best(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    res = cli(*ARGS, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.output[-3000:]
    first = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["val_acc_best"] == pytest.approx(first["val/acc_best"])
    assert ckpt["lr_schedulers"][0]["T_max"] == 2  # the run's own length, not a fixed number

    res = cli(*ARGS, "trainer.max_epochs=4", "ckpt_path=last", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.output[-3000:]
    assert "Restoring states from the checkpoint" in res.output
    second = json.loads((run_dir / "metrics.json").read_text())["metrics"]

    rows = _rows(run_dir)
    # (a) the CSV holds every epoch: the first run's rows were kept, the resumed ones appended
    val_epochs = [int(float(r["epoch"])) for r in rows if r.get("val/acc")]
    assert val_epochs == [0, 1, 2, 3], val_epochs
    # (b) the LR continues its cosine schedule, stretched to the new length, never re-warmed
    lrs = [float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")]
    expected = [_cosine(0, 2), _cosine(1, 2), _cosine(2, 4), _cosine(3, 4)]
    assert lrs == pytest.approx(expected, rel=1e-6), lrs
    assert all(b <= a for a, b in zip(lrs, lrs[1:])), lrs
    # (c) val/acc_best survives the resume: the best over all 4 epochs
    val_accs = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert second["val/acc_best"] >= first["val/acc_best"]
    assert second["val/acc_best"] == pytest.approx(max(val_accs), abs=1e-6)
    # callback states came back from the checkpoint and went on
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["epoch"] == 3 and final["global_step"] == 20
    # one state per callback; the two ModelCheckpoints (best by val/acc, last) differ by their monitor
    def _by_name(callbacks: dict) -> dict:
        return {k.split("{")[0] + ("" if "'monitor': None" not in k else "[last]"): v for k, v in callbacks.items()}

    states, before = _by_name(final["callbacks"]), _by_name(ckpt["callbacks"])
    assert "ModelCheckpoint[last]" in states, list(final["callbacks"])
    assert float(states["ModelCheckpoint"]["best_model_score"]) == pytest.approx(max(val_accs), abs=1e-6)
    assert float(states["EarlyStopping"]["best_score"]) >= float(before["EarlyStopping"]["best_score"])
    assert float(states["EarlyStopping"]["best_score"]) == pytest.approx(max(val_accs), abs=1e-6)


def test_last_ckpt_is_written_every_epoch_even_without_improvement(cli, tmp_path: Path) -> None:
    """With lr=0 val/acc never improves after epoch 0, so no best checkpoint is written after it; last.ckpt
    must still hold the last epoch (Lightning 2.6's save_last alone left epoch 0 there, and a resume
    retrained the epochs after it)."""
    run_dir = tmp_path / "run"
    res = cli(*ARGS, "trainer.max_epochs=3", "model.optimizer.lr=0.0", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.output[-3000:]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["epoch_000.ckpt", "last.ckpt"], ckpts  # the best is still epoch 0 ...
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2, last["epoch"]  # ... and last.ckpt is the third epoch
    best = torch.load(run_dir / "checkpoints" / "epoch_000.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3 * best["global_step"]

    # the resume goes on from epoch 3, not from epoch 1
    res = cli(*ARGS, "trainer.max_epochs=4", "model.optimizer.lr=0.0", "ckpt_path=last", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.output[-3000:]
    rows = _rows(run_dir)
    val_epochs = [int(float(r["epoch"])) for r in rows if r.get("val/acc")]
    assert val_epochs == [0, 1, 2, 3], val_epochs
