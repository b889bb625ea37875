"""Issue 9 item 1: `python run.py callbacks=... trainer=ddp_cpu` finishes, as users run it.

Real subprocesses (Lightning's DDP re-launches run.py for rank 1), the default data and model,
full training epochs (no ``limit_train_batches``), the progress bar on: RichProgressBar (the
default) and TQDMProgressBar (``callbacks.rich_progress_bar=null`` lets Lightning add it). Before
the fix, rank 0 sat in the progress bar's metric sync while rank 1 sat in FeatureMonitorCallback's
all_reduce, for ever; here a hang fails the test after ``TIMEOUT`` seconds (the process group,
rank 1 included, is killed).

Each run takes about a minute on 2 CPU cores, so the set is small: ``callbacks=all`` (default +
interpretation + feature_monitor + gram_matrix + terminate_on_nan + grad_norm) with both progress
bars, and ``callbacks=monitor`` (the command of the bug report) with the rich one.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

TIMEOUT = 300  # seconds; a healthy 2-epoch run takes about 60-120 s on 2 shared CPU cores

#: cheaper schedules so that every periodic callback fires within 2 short epochs (~10 steps each
#: per rank); nothing is switched off.
SCHEDULES = (
    "callbacks.gram_matrix.log_every_n_steps=5",
    "callbacks.grad_norm.log_every_n_steps=5",
    "callbacks.interpretation.log_every_n_epochs=1",
)


def run_ddp(out: Path, *overrides: str) -> tuple[int, str]:
    """``python run.py trainer=ddp_cpu <overrides>`` under a hard timeout; (returncode, output)."""
    cmd = [
        sys.executable,
        "run.py",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        f"hydra.run.dir={out}",
        "print_config=false",
        *overrides,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update({"WANDB_MODE": "offline", "RUNNER_OUTPUT_DIR": str(out.parent)})
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1 is a child of rank 0: kill the whole group
        output, _ = proc.communicate()
        pytest.fail(f"`{' '.join(cmd[1:])}` hung: no exit after {TIMEOUT} s\n{output[-4000:]}")
    return proc.returncode, output


def metric_rows(out: Path) -> list[dict[str, str]]:
    files = sorted(out.rglob("metrics.csv"))
    assert files, f"no metrics.csv under {out}"
    return list(csv.DictReader(files[0].open()))


def logged(rows: list[dict[str, str]], prefix: str) -> list[dict[str, str]]:
    return [r for r in rows if any(k.startswith(prefix) and v not in ("", None) for k, v in r.items())]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("group", "progress_bar"),
    [("all", "rich"), ("all", "tqdm"), ("monitor", "rich")],
)
def test_ddp_run_with_callbacks_finishes(tmp_path: Path, group: str, progress_bar: str) -> None:
    out = tmp_path / "run"
    bar = ["callbacks.rich_progress_bar=null"] if progress_bar == "tqdm" else []
    extra = [o for o in SCHEDULES if group == "all" or "grad_norm" in o]
    code, output = run_ddp(out, f"callbacks={group}", *bar, *extra)
    assert code == 0, output[-4000:]
    if progress_bar == "tqdm":
        assert "RichProgressBar" not in output
    rows = metric_rows(out)

    # FeatureMonitor: auto layers of resnet18, logged at the end of epochs 0 and 1, merged over ranks
    fm = logged(rows, "features/")
    assert sorted({int(r["epoch"]) for r in fm}) == [0, 1]
    keys = {k for r in fm for k, v in r.items() if k.startswith("features/") and v}
    assert {f"features/backbone.{layer}/std" for layer in ("layer1", "layer2", "layer4")} <= keys
    assert all(float(r["features/backbone.layer4/std"]) > 0 for r in fm)

    gn = logged(rows, "grad_norm/")
    assert gn and all(int(r["step"]) % 5 == 0 and int(r["step"]) > 0 for r in gn)
    assert logged(rows, "val/acc"), "validation ran"

    if group == "all":
        gram = logged(rows, "gram_matrix/")
        assert gram and [int(r["step"]) % 5 for r in gram] == [0] * len(gram)
        assert all(r.get("gram_matrix/centered_effective_rank") for r in gram)
        assert list((out / "images" / "gram_matrix").glob("step_*.png"))
        assert list((out / "images" / "interpretation").rglob("*.png"))
        # CartographyCallback: one cartography.csv from rank zero, every training sample once, both epochs
        with (out / "cartography.csv").open() as handle:
            carto = list(csv.DictReader(handle))
        assert [int(r["index"]) for r in carto] == list(range(len(carto))) and len(carto) > 1000
        assert {r["epochs"] for r in carto} == {"2"}
