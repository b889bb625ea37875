"""conf/callbacks/: yamls match the constructors, the groups compose, and run.py uses them for real."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cb_helpers import pythonpath_env


import callbacks

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
OURS = {
    "interpretation": callbacks.InterpretationCallback,
    "feature_monitor": callbacks.FeatureMonitorCallback,
    "gram_matrix": callbacks.GramMatrixCallback,
    "terminate_on_nan": callbacks.TerminateOnNaN,
    "grad_norm": callbacks.GradNormMonitor,
}


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_yaml_matches_its_constructor_one_to_one_with_comments(name: str) -> None:
    path = CONF / "callbacks" / f"{name}.yaml"
    text = path.read_text()
    node = yaml.safe_load(text)
    assert list(node) == [name]
    body = dict(node[name])
    cls = OURS[name]
    assert body.pop("_target_") == f"callbacks.{cls.__name__}"
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert list(body) == params
    lines = text.splitlines()
    for key in params:  # every argument has a comment right above it
        i = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"{key}:"))
        assert lines[i - 1].strip().startswith("#"), key


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def instantiate_nodes(node, names) -> dict[str, object]:
    from hydra.utils import instantiate

    return {k: instantiate(node[k]) for k in names}


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("interp", {"interpretation"}),
        ("monitor", {"feature_monitor", "grad_norm"}),
        ("gram", {"gram_matrix"}),
        ("all", set(OURS)),
    ],
)
def test_groups_compose_default_plus_ours(group: str, expected: set[str]) -> None:
    default = set(compose("callbacks=default").callbacks)
    cfg = compose(f"callbacks={group}")
    assert set(cfg.callbacks) == default | expected
    built = instantiate_nodes(cfg.callbacks, expected)
    for name in expected:
        assert isinstance(built[name], OURS[name])


def test_default_feature_layers_exist_in_the_default_model() -> None:
    from hydra.utils import instantiate

    cfg = compose("callbacks=all")
    model = instantiate(cfg.model, num_classes=10, image_size=32)
    names = dict(model.named_modules())
    for layer in cfg.callbacks.feature_monitor.layer_names:
        assert layer in names


def run_py(*args: str, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = pythonpath_env()
    env["RUNNER_OUTPUT_DIR"] = str(out)
    return subprocess.run(
        [sys.executable, "run.py", *args, "print_config=false"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_results(out: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in out.rglob("job_result.json")]
    return sorted(found, key=lambda r: r.get("job_num") or 0)


@pytest.mark.slow
def test_run_py_callbacks_all_under_ddp_cpu(tmp_path: Path) -> None:
    """`python run.py callbacks=all trainer=ddp_cpu`: images logged once, by rank zero."""
    proc = run_py(
        "callbacks=all",
        "trainer=ddp_cpu",
        "debug=limit",
        "trainer.max_epochs=1",
        "data.batch_size=16",
        "callbacks.rich_progress_bar=null",
        "callbacks.gram_matrix.log_every_n_steps=2",
        "callbacks.grad_norm.log_every_n_steps=2",
        "callbacks.interpretation.log_every_n_epochs=1",
        "callbacks.interpretation.target_layer=backbone.layer2",
        "logger=csv",
        out=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dirs = {p.parents[2] for p in tmp_path.rglob("images/gram_matrix/*.png")}
    assert len(run_dirs) == 1
    run_dir = run_dirs.pop()
    assert sorted(p.name for p in (run_dir / "images" / "gram_matrix").iterdir()) == [
        "step_000002.png",
        "step_000004.png",
    ]
    assert [p.name for p in (run_dir / "images" / "interpretation" / "gradcam").iterdir()] == ["step_000005.png"]
    metrics = next(run_dir.rglob("metrics.csv")).read_text()
    for key in ("gram_matrix/num_samples", "features/backbone.layer4/mean", "grad_norm/total"):
        assert key in metrics
    # 2 ranks x 16 samples in the matrix
    import csv

    rows = [r for r in csv.DictReader(next(run_dir.rglob("metrics.csv")).open()) if r.get("gram_matrix/num_samples")]
    assert {float(r["gram_matrix/num_samples"]) for r in rows} == {32.0}


@pytest.mark.slow
def test_nan_job_fails_and_the_next_job_of_the_multirun_still_runs(tmp_path: Path) -> None:
    proc = run_py(
        "-m",
        "callbacks=terminate_on_nan",
        "+callbacks.poison._target_=cb_helpers.PoisonWeights",
        "+callbacks.poison.at_batch=2,100000",
        "debug=limit",
        "trainer.max_epochs=2",
        "trainer.min_epochs=0",
        "logger=csv",
        out=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = job_results(tmp_path)
    assert len(results) == 2
    poisoned, healthy = results
    assert poisoned["status"] == "failed" and math.isnan(float(poisoned["optimized_metric"]))
    assert healthy["status"] == "ok" and not math.isnan(float(healthy["optimized_metric"]))
    assert "test/acc" not in poisoned.get("metrics", {})  # testing skipped for the failed job
    assert "test/acc" in healthy.get("metrics", {})
