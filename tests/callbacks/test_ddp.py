"""The callbacks under DDP: 2 CPU processes (ddp_spawn over gloo) inside pytest.

With ddp_spawn the parent only gets weights and ``callback_metrics`` back, so results are read
from disk: PNG files, the CSV metrics written by rank zero, and per-rank JSON files of DumpState.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from callbacks import (
    FeatureMonitorCallback,
    GradNormMonitor,
    GramMatrixCallback,
    InterpretationCallback,
    TerminateOnNaN,
)
from tests.support.callback_fits import (
    DumpState,
    NoFeaturesOnRank,
    ProbedNet,
    TinyData,
    TinyNet,
    UnevenRankData,
    csv_rows,
)

PER_RANK_BATCH = 8
NUM_BATCHES = 3
LAYERS = ["act1", "conv2"]


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


@pytest.mark.slow
def test_uneven_ranks_feature_std_and_gram_under_ddp(trainer_factory, tmp_path: Path) -> None:
    """Issue 7 items 7/8 and issue 9 item 1 under 2 ranks with uneven batches (8 and 5 images):
    FeatureMonitor's std of mean-100/std-0.01 inputs equals one pass over both ranks' images
    (the float32 E[x^2]-mean^2 of old gave ~0.02), and the gram matrix covers 8 + 5 samples."""
    data = UnevenRankData(batch_sizes=(8, 5), batches=3)
    callbacks = [
        FeatureMonitorCallback(["probe", "act1"], num_batches=3),
        GramMatrixCallback(log_every_n_steps=1, max_samples=64, collapse_threshold=None),
        DumpState(str(tmp_path / "state")),
    ]
    ddp = trainer_factory(
        callbacks, strategy="ddp_spawn", devices=2, limit_val_batches=0, use_distributed_sampler=False
    )
    model = ProbedNet(lr=0.0, feature_mode="rank_onehot")
    ddp.fit(model, data)
    state = ranks(tmp_path / "state")
    assert [s["global_step"] for s in state] == [3, 3]

    everything = torch.cat([data.rank_images(r)[0].flatten() for r in (0, 1)]).double()
    for s in state:  # every rank holds the merged values
        assert s["metrics"]["features/probe/std"] == pytest.approx(float(everything.std(unbiased=False)), rel=1e-5)
        assert s["metrics"]["features/probe/mean"] == pytest.approx(float(everything.mean()), rel=1e-7)
        assert s["metrics"]["features/probe/max"] == pytest.approx(float(everything.max()), rel=1e-7)
    assert state[0]["metrics"]["features/probe/std"] == pytest.approx(0.01, rel=0.02)

    # act1 (after conv + ReLU) against one process running the same images
    acts = []
    with torch.no_grad():
        for r in (0, 1):
            acts.append(model.act1(model.conv1(data.rank_images(r)[0])).flatten().double())
    acts_all = torch.cat(acts)
    got = state[0]["metrics"]
    assert got["features/act1/std"] == pytest.approx(float(acts_all.std(unbiased=False)), rel=1e-4)
    # logged metrics are float32 (a 6e-8 step near 0.74): compare the count of zeros they imply,
    # exact while the number of activations stays well below 2**23
    n_acts = acts_all.numel()
    assert n_acts < 2**20
    assert round(got["features/act1/sparsity"] * n_acts) == int((acts_all == 0).sum())

    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("gram_matrix/num_samples")]
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    p = torch.tensor([8**0.5, 5**0.5]) / (8**0.5 + 5**0.5)
    rank = float(torch.exp(-(p * p.log()).sum()))
    for r in rows:
        assert float(r["gram_matrix/num_samples"]) == 13
        assert float(r["gram_matrix/mean_offdiag"]) == pytest.approx((8 * 7 + 5 * 4) / (13 * 12), abs=1e-6)
        assert float(r["gram_matrix/effective_rank"]) == pytest.approx(rank, abs=1e-4)
        assert float(r["gram_matrix/centered_effective_rank"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_gram_skips_on_every_rank_when_one_rank_has_no_features(trainer_factory, tmp_path: Path) -> None:
    """Every rank takes part in the size gather; when one rank has no features all skip (before,
    the rank without features returned early and the other waited in all_gather for ever)."""
    callbacks = [GramMatrixCallback(log_every_n_steps=1), DumpState(str(tmp_path / "state"))]
    ddp = trainer_factory(callbacks, strategy="ddp_spawn", devices=2, limit_train_batches=3, limit_val_batches=0)
    ddp.fit(NoFeaturesOnRank(rank=1), TinyData(n=96, batch_size=8))
    state = ranks(tmp_path / "state")
    assert [s["global_step"] for s in state] == [3, 3]
    assert not (tmp_path / "images" / "gram_matrix").exists()
    assert not any(r.get("gram_matrix/num_samples") for r in csv_rows(tmp_path / "csv"))
