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
    states = {k.split("{")[0]: v for k, v in final["callbacks"].items()}
    before = {k.split("{")[0]: v for k, v in ckpt["callbacks"].items()}
    assert float(states["ModelCheckpoint"]["best_model_score"]) == pytest.approx(max(val_accs), abs=1e-6)
    assert float(states["EarlyStopping"]["best_score"]) >= float(before["EarlyStopping"]["best_score"])
    assert float(states["EarlyStopping"]["best_score"]) == pytest.approx(max(val_accs), abs=1e-6)
