"""``kill -9`` at seeded random points of a real ``python run.py``, then ``ckpt_path=last``: nothing lost,
and the resumed run ends with bitwise the weights of the run that was never killed (issue 21).

One run directory lives through ``len(KINDS)`` kills, each at a point drawn with a fixed seed: inside a
training step (after backward, before the optimizer step), inside the end-of-epoch checkpoint write
(the temporary file created, not complete), during validation. Each attempt is held at its point by
``tests.support.kill_points.KillAt`` and SIGKILLed from here; the next attempt resumes with
``ckpt_path=last``. Checked after every kill: the process died of SIGKILL, ``last.ckpt`` loads and holds
the last finished epoch (and a checkpoint-write kill left a partial temporary beside it); after the
next attempt, the dead writer's temporaries are gone. At the end: the final weights equal those of an
uninterrupted run of the same configuration (run alongside), ``metrics.csv`` holds each epoch once, no
temporaries are left. The counts (faults injected, survived with nothing lost, max abs weight
difference) are printed and kept as test properties.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.kill_points import KILL_FILE
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

SEED = 21  # draws the kill points
EPOCHS, BATCHES, VAL_BATCHES = 4, 5, 2  # debug=limit: 5 training and 2 validation batches an epoch
KINDS = ("step", "checkpoint", "validation")
ARGS = ("debug=limit", f"trainer.max_epochs={EPOCHS}", "trainer.deterministic=true", "model.backbone=test_resnet",
        "data.image_size=16", "data.batch_size=16", "test=false", "report=false", "print_config=false",
        "callbacks.early_stopping=null", "callbacks.rich_progress_bar=null", "trainer.log_every_n_steps=1", "seed=5",
        "+callbacks.kill._target_=tests.support.kill_points.KillAt")
PHASE = {"step": 0, "validation": 1, "checkpoint": 2}  # order of the points within one epoch


def _points(seed: int) -> list[tuple[str, int, int]]:
    """``(kind, epoch, batch)`` per kind, in the order a run meets them; epochs >= 1 (a last.ckpt exists)."""
    rng = random.Random(seed)
    points = [(kind, rng.randint(1, EPOCHS - 1),
               rng.randrange(BATCHES) if kind == "step" else rng.randrange(VAL_BATCHES) if kind == "validation" else 0)
              for kind in KINDS]
    return sorted(points, key=lambda p: (p[1], PHASE[p[0]], p[2]))


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    """``python run.py`` in the background, its output into ``<run dir>.log`` (a pipe nobody reads could fill)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update({"RUNNER_OUTPUT_DIR": str(run_dir.parent / "outputs"), "PYTHONPATH": str(REPO)})
    with open(run_dir.with_suffix(".log"), "a") as log:
        return subprocess.Popen([sys.executable, "run.py", *ARGS, f"hydra.run.dir={run_dir}", *extra], cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def _output(run_dir: Path) -> str:
    return run_dir.with_suffix(".log").read_text()[-4000:]


def _kill_at_point(proc: subprocess.Popen, run_dir: Path) -> str:
    """Wait for ``proc`` to hold at its point, SIGKILL it; return what it had held at."""
    marker = run_dir / KILL_FILE
    deadline = time.monotonic() + 300
    while not marker.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the run never reached its kill point: {_output(run_dir)}")
        time.sleep(0.05)
    pid, *where = marker.read_text().split()
    os.kill(int(pid), signal.SIGKILL)
    proc.wait(timeout=60)
    marker.unlink()
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return " ".join(where)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def _temporaries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.rglob("*.tmp"))


def test_kill9_at_random_points_then_resume_exactly(tmp_path: Path, record_property) -> None:
    whole_dir, run_dir = tmp_path / "whole", tmp_path / "killed"
    procs: list[subprocess.Popen] = []
    try:
        whole = _start(whole_dir)  # the uninterrupted run, alongside
        procs.append(whole)
        points = _points(SEED)
        loaded, left_behind, cleaned, log = 0, [], True, []
        for attempt, (kind, epoch, batch) in enumerate(points):
            extra = [f"+callbacks.kill.kind={kind}", f"+callbacks.kill.epoch={epoch}", f"+callbacks.kill.batch={batch}"]
            proc = _start(run_dir, *extra, *(["ckpt_path=last"] if attempt else []))
            procs.append(proc)
            held = _kill_at_point(proc, run_dir)
            assert held.split()[:2] == [kind, str(epoch)], held
            cleaned &= not set(left_behind) & set(_temporaries(run_dir))  # the previous dead writer's files are gone
            ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            # the last finished epoch before the point: the checkpoint being written at the end of `epoch` is not it
            assert ckpt["epoch"] == epoch - 1, (kind, epoch, ckpt["epoch"])
            loaded += 1
            left_behind = _temporaries(run_dir)
            if kind == "checkpoint":
                assert left_behind, "a kill inside the checkpoint write left no temporary file: the point was missed"
            log.append(f"kill -9 during {kind} (epoch {epoch}, batch {batch}): last.ckpt loads (epoch {ckpt['epoch']}); "
                       f"left {left_behind or 'no temporaries'}")

        final = _start(run_dir, "+callbacks.kill.kind=none", "ckpt_path=last")
        procs.append(final)
        assert final.wait(timeout=600) == 0, _output(run_dir)
        assert whole.wait(timeout=600) == 0, _output(whole_dir)

    finally:  # never leave a run behind, whatever failed
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    a, b = _weights(whole_dir), _weights(run_dir)
    assert a.keys() == b.keys()
    diff = max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0) for k in a)
    with open(run_dir / "csv" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val_epochs = [int(float(r["epoch"])) for r in rows if r.get("val/acc")]
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    leftover = _temporaries(run_dir)
    intact = diff == 0.0 and val_epochs == list(range(EPOCHS)) and steps == sorted(set(steps)) and cleaned and not leftover
    survived = loaded if intact else 0  # nothing lost: every check below holds, for all the faults together
    summary = (f"faults injected: {len(points)}, survived with nothing lost: {survived}, "
               f"max abs weight difference after resume: {diff}")
    print("\n".join([*log, summary]))
    record_property("faults_injected", len(points))
    record_property("survived_with_nothing_lost", survived)
    record_property("max_abs_weight_difference", diff)

    assert diff == 0.0, summary
    assert val_epochs == list(range(EPOCHS)), f"each epoch once in metrics.csv: {val_epochs}"
    assert steps == sorted(set(steps)), f"a training step logged twice in metrics.csv: {steps}"
    assert cleaned and not leftover, f"temporaries of killed writers left behind: {leftover or left_behind}"
