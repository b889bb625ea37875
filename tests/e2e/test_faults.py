"""Faults injected into real ``python run.py`` runs: nothing lost, nothing that lies.

One run directory lives through four attempts, each held by ``PauseOnce`` one batch further into
epoch 1 than the one before (each resumes from the end of epoch 0) and then stopped from outside: SIGTERM (while a second run tries the same directory), SIGINT after a resume,
``kill -9`` after another (leaving a stale lock and, planted with the killed writer's pid, partial
checkpoints), and a last resume to the end. Each attempt's exit status, ``status.json``, report and
``csv/metrics.csv`` are checked as it goes. A separate run writes into a small tmpfs that fills up at
its second epoch's checkpoint (where the machine allows mounting one).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.paths import REPO

pytestmark = pytest.mark.slow

EPOCHS, BATCHES = 2, 5  # debug=limit: 5 training batches an epoch
# a small backbone and batch: cheap steps and 60 MB checkpoints
ARGS = ("debug=limit", f"trainer.max_epochs={EPOCHS}", "trainer.log_every_n_steps=1", "print_config=false",
        "callbacks.early_stopping=null", "callbacks.rich_progress_bar=null", "model.backbone=resnet10t",
        "data.batch_size=16")
PAUSE = "+callbacks.pause._target_=tests.support.pause.PauseOnce"
FAULTS: dict[str, bool] = {}  # fault -> survived with nothing lost


def _env(out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "RUNNER_OUTPUT_DIR": str(out), "PYTHONPATH": str(REPO)}


def _default_sigint() -> None:
    """In the child, before run.py starts: SIGINT as a terminal's foreground process has it. A suite
    started in the background of a non-interactive shell (``make test &``) inherits SIGINT ignored,
    and run.py rightly leaves an ignored SIGINT ignored: the Ctrl-C case would then wait for nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(run_dir: Path, *extra: str, epochs: int = EPOCHS) -> subprocess.Popen:
    args = [a if not a.startswith("trainer.max_epochs=") else f"trainer.max_epochs={epochs}" for a in ARGS]
    return subprocess.Popen([sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}", *extra], cwd=REPO,
                            env=_env(run_dir.parent / "outputs"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)


def _paused(proc: subprocess.Popen, run_dir: Path, epoch: int) -> subprocess.Popen:
    """Wait until ``proc`` holds at batch 1 of ``epoch`` (``PauseOnce`` wrote ``paused``)."""
    deadline = time.monotonic() + 240
    while not (run_dir / "paused").is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the run did not reach epoch {epoch}: {(out + err)[-3000:]}")
        time.sleep(0.2)
    (run_dir / "paused").unlink()
    return proc


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out + err


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _each_epoch_once(run_dir: Path, epochs: int) -> None:
    rows = _rows(run_dir)
    val = [int(float(r["epoch"])) for r in rows if r.get("val/acc")]
    assert val == list(range(epochs)), val
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert steps == sorted(set(steps)), steps  # no step logged twice


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def lived(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The four attempts on one directory; each test checks one of them (they share the runs)."""
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    seen: dict = {"run_dir": run_dir}

    # 1. SIGTERM at epoch 1, while a second run is refused the directory
    first = _paused(_start(run_dir, PAUSE, "+callbacks.pause.at_batch=1"), run_dir, 1)
    second = subprocess.run([sys.executable, "run.py", *ARGS, f"hydra.run.dir={run_dir}"], cwd=REPO,
                            env=_env(run_dir.parent / "outputs"), capture_output=True, text=True, timeout=120)
    seen["second"] = (second.returncode, second.stderr)
    first.send_signal(signal.SIGTERM)
    seen["sigterm"] = (*_finish(first), _status(run_dir), (run_dir / "report.html").read_text())
    # 2. resumed, then SIGINT (Ctrl-C) a batch later
    resumed = _paused(_start(run_dir, "ckpt_path=last", PAUSE, "+callbacks.pause.at_batch=2"), run_dir, 1)
    resumed.send_signal(signal.SIGINT)
    seen["sigint"] = (*_finish(resumed), _status(run_dir), _rows(run_dir))
    # 3. resumed, then kill -9 a batch later; partial checkpoints of the killed writer stay behind
    killed = _paused(_start(run_dir, "ckpt_path=last", PAUSE, "+callbacks.pause.at_batch=3"), run_dir, 1)
    killed.kill()
    _finish(killed)
    partial = [run_dir / "checkpoints" / f".last.ckpt.{killed.pid}.tmp",
               run_dir / "checkpoints" / f".epoch_001.ckpt.{killed.pid}.tmp"]
    for path in partial:
        path.write_bytes(b"\0" * 4096)
    seen["killed"] = (killed.pid, (run_dir / ".lock").read_text(), _status(run_dir), partial)
    # 4. resumed to the end
    seen["final"] = (*_finish(_start(run_dir, "ckpt_path=last")), _status(run_dir))
    return seen


def test_a_second_run_in_the_same_directory_is_refused_in_one_line(lived: dict) -> None:
    code, err = lived["second"]
    holder = f"{lived['run_dir']} is in use by another run (pid "
    assert code == 1 and f"Error: {holder}" in err and socket.gethostname() in err, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    FAULTS["a second run in the same directory"] = True


def test_sigterm_is_an_interruption_that_resumes(lived: dict) -> None:
    code, output, status, report = lived["sigterm"]
    run_dir = lived["run_dir"]
    assert code == 143, output[-3000:]
    assert status["state"] == "interrupted" and status["step"] == BATCHES + 2, status  # held after batch 1 of epoch 1
    assert status["reason"] == "interrupted by SIGTERM"
    assert "This run was interrupted at global step 7" in report and "ckpt_path=last" in report
    # the hint repeats the run's own overrides (an experiment= among them would pick the same model)
    hint = next(line for line in output.splitlines() if line.startswith("Resume it from its last checkpoint with: "))
    assert hint.startswith("Resume it from its last checkpoint with: python run.py " + " ".join(ARGS)), hint
    assert hint.endswith(f" ckpt_path=last hydra.run.dir={run_dir}"), hint
    FAULTS["SIGTERM"] = True


def test_sigint_after_a_resume_is_an_interruption_and_the_resume_dropped_the_replayed_rows(lived: dict) -> None:
    code, output, status, rows = lived["sigint"]
    assert code == 130, output[-3000:]
    assert status["state"] == "interrupted" and status["step"] == BATCHES + 3, status
    assert [a["state"] for a in status["attempts"]] == ["interrupted", "interrupted"]
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert steps == sorted(set(steps)), steps  # the SIGTERMed attempt's epoch-1 rows were not kept twice
    FAULTS["SIGINT"] = True


def test_kill_leaves_a_stale_lock_and_partial_checkpoints_that_the_next_run_clears(lived: dict) -> None:
    pid, lock, status, partial = lived["killed"]
    assert lock.split()[0] == str(pid) and status["state"] == "running"  # killed: no record, the lock stays
    code, output, final = lived["final"]
    run_dir = lived["run_dir"]
    assert code == 0, output[-3000:]
    assert f"took over the lock of {run_dir} from pid {pid} on {socket.gethostname()}" in output
    assert "Removed 2 temporary file(s) left by a writer that was killed" in (run_dir / "debug.log").read_text()
    assert not any(p.exists() for p in partial) and not list(run_dir.rglob("*.tmp"))
    assert not (run_dir / ".lock").exists()
    FAULTS["kill -9 (stale lock, partial checkpoints)"] = True


def test_the_directory_ends_finished_with_every_epoch_once(lived: dict) -> None:
    code, output, status = lived["final"]
    run_dir = lived["run_dir"]
    assert code == 0
    assert (status["state"], status["step"]) == ("finished", EPOCHS * BATCHES), status
    assert [(a["state"], a.get("reason")) for a in status["attempts"]] == [
        ("interrupted", "interrupted by SIGTERM"), ("interrupted", "interrupted by SIGINT"),
        ("interrupted", "killed: no record"), ("finished", None)]
    _each_epoch_once(run_dir, EPOCHS)
    last = _last(run_dir)
    assert last["global_step"] == EPOCHS * BATCHES and last["epoch"] == EPOCHS - 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and json.loads((run_dir / "job_result.json").read_text())["status"] == "ok"
    report = (run_dir / "report.html").read_text()
    assert "This run was interrupted" not in report and "after 4 attempts" in report
    assert not (run_dir / "FAILED").exists()


def test_a_full_disk_is_one_line_and_keeps_the_earlier_checkpoints(lived: dict, tmp_path: Path) -> None:
    """A tmpfs with room for one of the first epoch's two checkpoints and half of the other."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs): the disk-full case is not run here")
    size = (lived["run_dir"] / "checkpoints" / "last.ckpt").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(1.5 * size) + (2 << 20)}", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not allowed here: {mounted.stderr.strip()}")
    try:
        run_dir = disk / "run"
        code, output = _finish(_start(run_dir, "report=false", epochs=1))
        err = output.strip().splitlines()
        assert code == 1, output[-3000:]
        line = next(x for x in err if x.startswith("Error: "))
        assert line.startswith(f"Error: No space left on device writing {run_dir / 'checkpoints'}/"), line
        assert " free); earlier checkpoints are intact" in line and "Traceback" not in output, output[-3000:]
        assert _status(run_dir)["state"] == "failed" and not (run_dir / "metrics.json").exists()
        assert not (run_dir / "FAILED").exists() or (run_dir / "FAILED").stat().st_size > 0
        (kept,) = (run_dir / "checkpoints").glob("*.ckpt")  # the one written before the disk filled loads
        assert torch.load(kept, map_location="cpu", weights_only=False)["epoch"] == 0
        assert not list(run_dir.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    FAULTS["full disk"] = True


def test_zz_count(lived: dict) -> None:
    """The closing note: faults injected and survived with nothing lost (every earlier test that passed)."""
    print(f"\nfaults injected: {len(FAULTS)} kinds ({', '.join(FAULTS)}); survived with nothing lost: "
          f"{sum(FAULTS.values())}")
    assert FAULTS
