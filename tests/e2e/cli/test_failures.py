"""How runs end when something goes wrong: a stuck DDP rank, a NaN loss, a setup error.

Real `python run.py` subprocesses with the default callbacks (progress bar included).
"""

from __future__ import annotations

import gc
import json
import math
import re
import socket
import time
from pathlib import Path

from tests.support.paths import REPO

import pytest
import torch

pytestmark = pytest.mark.slow

STUCK = "+callbacks.stuck._target_=tests.support.stuck_rank.StuckRank"
# the timeout also bounds the rendezvous, so it must cover the second rank's start-up on a busy machine


def _results(root: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in root.rglob("job_result.json")]
    return sorted(found, key=lambda r: r.get("job_num") or 0)


def test_stuck_rank_ends_the_run_with_a_timeout_naming_the_rank(cli, tmp_path: Path) -> None:
    """A rank that stops answering makes the others fail in their collective after trainer.strategy.timeout."""
    run_dir = tmp_path / "stuck"
    t0 = time.monotonic()
    res = cli("trainer=ddp_cpu", "trainer.strategy.timeout.seconds=40", "debug=limit", "trainer.max_epochs=1",
              STUCK, f"hydra.run.dir={run_dir}", env={"PYTHONPATH": str(REPO)}, timeout=300)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.output[-3000:]
    assert "rank 0 of 2" in res.output, res.output[-3000:]
    assert "trainer.strategy.timeout" in res.output
    # the stuck rank (asleep for 600 s) was ended with the run: nothing kept the pipes open
    assert elapsed < 200, elapsed
    assert (run_dir / "FAILED").is_file()  # it trained a step before getting stuck: logs kept


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def test_stuck_job_fails_and_the_sweep_goes_on(cli, tmp_path: Path) -> None:
    """The stuck DDP job fails naming the rank; the next DDP job of the sweep still trains.

    MASTER_PORT is pinned, as a user's environment (or a pytest process after a ddp_spawn test) may
    pin it: every job used to rendezvous on it, and the failed job's TCP store, still alive in the
    sweep process, was reused by the next job (torch's multi-tenant store), whose gloo rendezvous
    then read the killed ranks' addresses and failed ("connectFullMesh ... Connection refused").
    """
    pinned = _free_port()
    res = cli("-m", "trainer=ddp_cpu", "trainer.strategy.timeout.seconds=40", "debug=limit", "trainer.max_epochs=1",
              STUCK, "+callbacks.stuck.seconds=600,0", env={"PYTHONPATH": str(REPO), "MASTER_PORT": str(pinned)},
              timeout=500)
    assert res.returncode == 0, res.output[-3000:]
    results = _results(tmp_path / "outputs")
    assert [r["status"] for r in results] == ["failed", "ok"], results
    assert "rank 0 of 2" in results[0]["error"] and "trainer.strategy.timeout" in results[0]["error"]
    assert math.isnan(results[0]["optimized_metric"])
    # each job had a rendezvous port of its own, not the inherited one
    ports = [int(p) for p in re.findall(r"this job's rendezvous is on port (\d+)", res.output)]
    assert len(ports) == 2 and len(set(ports)) == 2 and pinned not in ports, (pinned, ports)


def test_a_failed_jobs_tcp_store_is_gone_before_the_next_job_starts() -> None:
    """What a failed job's process group held (here its TCP store, in a reference cycle as a failed
    Trainer's DDP wrapper holds it) is released when the next job of the sweep process starts.

    torch creates rank 0's store with multi_tenant=True: a store made on the port of one still
    alive joins it and sees its keys (the killed ranks' gloo addresses). gc is off so that only the
    runner's own release can free the cycle.
    """
    from torch.distributed import TCPStore

    from runner.launch.ddp import isolated_distributed_state

    port = _free_port()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="timed out"):
            with isolated_distributed_state():
                job: dict = {"store": TCPStore("127.0.0.1", port, 1, True, multi_tenant=True)}
                job["self"] = job
                job["store"].set("rank_1", "gloo address of a rank that was killed")
                del job
                raise RuntimeError("a collective timed out")
        with isolated_distributed_state():
            store = TCPStore("127.0.0.1", port, 1, True, multi_tenant=True)
            assert not store.check(["rank_1"]), "the next job joined the failed job's TCP store"
    finally:
        if was_enabled:
            gc.enable()


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
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "report.html").is_file()
    # one status for the directory (issue 21): the failed resume, with the earlier finished attempt in its history;
    # the earlier attempt's metrics.json goes, so no stale "finished" record sits beside the failure
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and [a["state"] for a in status["attempts"]] == ["finished", "failed"]
    assert not (run_dir / "metrics.json").exists()
