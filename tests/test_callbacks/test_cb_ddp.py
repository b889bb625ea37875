"""The callbacks under DDP: 2 CPU processes (ddp_spawn over gloo) inside pytest.

With ddp_spawn the parent only gets weights and ``callback_metrics`` back, so results are read
from disk: PNG files, the CSV metrics written by rank zero, and per-rank JSON files of DumpState.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cb_helpers import DumpState, TinyData, TinyNet

from callbacks import (
    FeatureMonitorCallback,
    GradNormMonitor,
    GramMatrixCallback,
    InterpretationCallback,
    TerminateOnNaN,
)

PER_RANK_BATCH = 8
NUM_BATCHES = 3
LAYERS = ["act1", "conv2"]


def csv_rows(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(next(root.rglob("metrics.csv")).open()))


def ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_callbacks_under_ddp(trainer_factory, tmp_path: Path) -> None:
    data = TinyData(n=96, batch_size=PER_RANK_BATCH)
    callbacks = [
        InterpretationCallback(log_every_n_epochs=1, num_samples=4),
        FeatureMonitorCallback(LAYERS, num_batches=NUM_BATCHES),
        GramMatrixCallback(log_every_n_steps=2, max_samples=64),
        TerminateOnNaN(),
        GradNormMonitor(log_every_n_steps=2),
        DumpState(str(tmp_path / "state")),
    ]
    ddp = trainer_factory(
        callbacks,
        strategy="ddp_spawn",
        devices=2,
        limit_train_batches=4,
        limit_val_batches=1,
        use_distributed_sampler=False,  # TinyData splits in order, so one process can see the same batches
    )
    model = TinyNet(lr=0.0, feature_mode="rank_onehot")
    ddp.fit(model, data)
    state = ranks(tmp_path / "state")
    assert [s["global_step"] for s in state] == [4, 4]
    assert [s["hooks"] for s in state] == [0, 0]
    assert not any(s["run_failed"] for s in state)

    # the interpretation grid: logged once, by rank zero only
    assert [p.name for p in (tmp_path / "images" / "interpretation" / "gradcam").iterdir()] == ["step_000004.png"]
    assert [s["num_logged"]["InterpretationCallback"] for s in state] == [1, 0]

    # the gram matrix covers the global batch: features are one-hot of the rank, so within-rank
    # pairs have similarity 1 and cross-rank pairs 0
    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/num_samples")]
    assert [int(r["step"]) for r in rows] == [2, 4]
    b = PER_RANK_BATCH
    for r in rows:
        assert float(r["gram_matrix/num_samples"]) == 2 * b
        assert float(r["gram_matrix/mean_offdiag"]) == pytest.approx((b - 1) / (2 * b - 1), abs=1e-6)
        assert float(r["gram_matrix/effective_rank"]) == pytest.approx(2.0, abs=1e-4)
    assert len(list((tmp_path / "images" / "gram_matrix").iterdir())) == 2

    # feature statistics equal those of one process seeing both ranks' batches
    single_data = TinyData(n=96, batch_size=2 * PER_RANK_BATCH)
    single = trainer_factory(
        [FeatureMonitorCallback(LAYERS, num_batches=NUM_BATCHES)],
        logger="none",
        default_root_dir=str(tmp_path / "single"),
        limit_train_batches=NUM_BATCHES,
        limit_val_batches=0,
    )
    same = TinyNet(lr=0.0)
    same.load_state_dict(model.state_dict())  # the weights (lr=0: never changed) of the DDP run
    single.fit(same, single_data)
    ddp_metrics = state[0]["metrics"]
    for layer in LAYERS:
        for stat in ("mean", "std", "sparsity", "max"):
            key = f"features/{layer}/{stat}"
            expected = float(single.callback_metrics[key])
            assert ddp_metrics[key] == pytest.approx(expected, rel=1e-5, abs=1e-7), key
            assert float(ddp.callback_metrics[key]) == pytest.approx(expected, rel=1e-5, abs=1e-7), key
    assert state[1]["metrics"]["features/act1/mean"] == ddp_metrics["features/act1/mean"]  # same on every rank
    assert any(r.get("grad_norm/total") for r in csv_rows(tmp_path / "csv"))


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(trainer_factory, tmp_path: Path) -> None:
    callbacks = [TerminateOnNaN(), DumpState(str(tmp_path / "state"))]
    trainer = trainer_factory(
        callbacks, strategy="ddp_spawn", devices=2, max_epochs=3, limit_train_batches=10, limit_val_batches=0
    )
    trainer.fit(TinyNet(nan_at_step=2, nan_rank=1), TinyData(n=320, batch_size=8))
    state = ranks(tmp_path / "state")
    assert [s["run_failed"] for s in state] == [True, True]
    assert [s["global_step"] for s in state] == [3, 3]  # both stopped after the first NaN step
    assert all(s["should_stop"] for s in state)
