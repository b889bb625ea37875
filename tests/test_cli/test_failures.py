"""How runs end when something goes wrong: a stuck DDP rank, a NaN loss, a setup error.

Real `python run.py` subprocesses with the default callbacks (progress bar included).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
STUCK = "+callbacks.stuck._target_=stuck_rank.StuckRank"
# the timeout also bounds the rendezvous, so it must cover the second rank's start-up on a busy machine


def _results(root: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in root.rglob("job_result.json")]
    return sorted(found, key=lambda r: r.get("job_num") or 0)


def test_stuck_rank_ends_the_run_with_a_timeout_naming_the_rank(cli, tmp_path: Path) -> None:
    """A rank that stops answering makes the others fail in their collective after trainer.strategy.timeout."""
    run_dir = tmp_path / "stuck"
    t0 = time.monotonic()
    res = cli("trainer=ddp_cpu", "trainer.strategy.timeout.seconds=40", "debug=limit", "trainer.max_epochs=1",
              STUCK, f"hydra.run.dir={run_dir}", env={"PYTHONPATH": str(HERE)}, timeout=300)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.output[-3000:]
    assert "rank 0 of 2" in res.output, res.output[-3000:]
    assert "trainer.strategy.timeout" in res.output
    # the stuck rank (asleep for 600 s) was ended with the run: nothing kept the pipes open
    assert elapsed < 200, elapsed
    assert (run_dir / "FAILED").is_file()  # it trained a step before getting stuck: logs kept


def test_stuck_job_fails_and_the_sweep_goes_on(cli, tmp_path: Path) -> None:
    res = cli("-m", "trainer=ddp_cpu", "trainer.strategy.timeout.seconds=40", "debug=limit", "trainer.max_epochs=1",
              STUCK, "+callbacks.stuck.seconds=600,0", env={"PYTHONPATH": str(HERE)}, timeout=500)
    assert res.returncode == 0, res.output[-3000:]
    results = _results(tmp_path / "outputs")
    # The stuck job fails with the timeout naming the rank, and the sweep goes on to run job 1.
    # Known defect (open): job 1 sometimes fails its gloo rendezvous right after the stuck job's ranks
    # were killed ("connectFullMesh ... Connection refused"), so only that it ran is asserted here.
    assert [r["status"] for r in results][:1] == ["failed"] and len(results) == 2, results
    assert results[1]["status"] in ("ok", "failed") and results[1]["job_num"] == 1, results
    assert "rank 0 of 2" in results[0]["error"] and "trainer.strategy.timeout" in results[0]["error"]
    assert math.isnan(results[0]["optimized_metric"])


def test_nan_loss_stops_with_status_1_and_finite_checkpoints(cli, tmp_path: Path) -> None:
    """lr=1e12 makes the loss NaN within a few steps; the NaN step is never applied nor saved."""
    run_dir = tmp_path / "nan"
    res = cli("callbacks=all", "model.optimizer.lr=1e12", "debug=limit", "trainer.max_epochs=2",
              f"hydra.run.dir={run_dir}")
    assert res.returncode == 1, res.output[-3000:]
    assert "TerminateOnNaN" in res.output and "training loss is not finite" in res.output
    assert (run_dir / "FAILED").is_file() and not (run_dir / "metrics.json").exists()
    result = json.loads((run_dir / "job_result.json").read_text())
    assert result["status"] == "failed" and math.isnan(result["optimized_metric"])
    saved = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert run_dir / "checkpoints" / "last.ckpt" in saved
    for path in saved:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        assert not bad, (path.name, bad[:5])


def test_nan_job_fails_and_the_sweep_goes_on(cli, tmp_path: Path) -> None:
    res = cli("-m", "model.optimizer.lr=1e12,1e-3", "debug=limit", "trainer.max_epochs=1", "callbacks=all")
    assert res.returncode == 0, res.output[-3000:]
    results = _results(tmp_path / "outputs")
    assert [r["status"] for r in results] == ["failed", "ok"], results
    assert "TerminateOnNaN" in results[0]["error"]


def test_failure_before_the_first_step_leaves_no_run_dir(cli, tmp_path: Path) -> None:
    """Fit started (callback setup) but no optimizer step was taken: nothing is kept."""
    run_dir = tmp_path / "setup-error"
    res = cli("callbacks=interp", "callbacks.interpretation.method=foo", f"hydra.run.dir={run_dir}")
    assert res.returncode == 1
    assert "foo" in res.output and "Traceback" not in res.output
    assert "checkpoints and logs kept" not in res.output
    assert not run_dir.exists(), sorted(p.name for p in run_dir.rglob("*"))


def test_failed_resume_keeps_the_earlier_run(cli, tmp_path: Path) -> None:
    """A run directory that holds an earlier run is never removed, even when the resume fails at once."""
    run_dir = tmp_path / "run"
    res = cli("debug=fdr", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.output[-3000:]
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / "last.ckpt").write_text("not a checkpoint")
    res = cli("ckpt_path=last", "debug=fdr", f"hydra.run.dir={run_dir}")
    assert res.returncode == 1
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
