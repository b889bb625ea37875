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
from tests.support.callback_fits import pythonpath_env


import callbacks

from tests.support.paths import REPO

CONF = REPO / "conf"
OURS = {
    "interpretation": callbacks.InterpretationCallback,
    "feature_monitor": callbacks.FeatureMonitorCallback,
    "gram_matrix": callbacks.GramMatrixCallback,
    "terminate_on_nan": callbacks.TerminateOnNaN,
    "grad_norm": callbacks.GradNormMonitor,
    "cartography": callbacks.CartographyCallback,
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


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ((), ["backbone.layer1", "backbone.layer2", "backbone.layer4"]),
        (("model.backbone=convnext_nano",), ["backbone.stages.0", "backbone.stages.2", "backbone.stages.3"]),
        (("experiment=digits_vit",), ["backbone.blocks.3", "backbone.blocks.7", "backbone.blocks.11"]),
    ],
)
def test_monitor_defaults_fit_any_backbone(trainer_factory, overrides: tuple[str, ...], expected: list[str]) -> None:
    """Issue 9 item 4: `callbacks=monitor` with the shipped yaml (layer_names: auto) on non-ResNets,
    composed for real and fitted (2 tiny steps); the yaml used to hard-code backbone.layer2/3/4."""
    from tests.support.callback_fits import TinyData
    from hydra.utils import instantiate

    cfg = compose("callbacks=monitor", *overrides)
    assert cfg.callbacks.feature_monitor.layer_names == "auto"
    model = instantiate(cfg.model, num_classes=10)
    built = instantiate_nodes(cfg.callbacks, ["feature_monitor", "grad_norm"])
    trainer = trainer_factory(list(built.values()), limit_train_batches=2, limit_val_batches=0, logger="none")
    trainer.fit(model, TinyData(n=32, image_size=int(cfg.data.image_size), batch_size=8))
    assert built["feature_monitor"].resolved_layer_names == expected
    for layer in expected:
        for stat in ("mean", "std", "sparsity", "max"):
            assert math.isfinite(float(trainer.callback_metrics[f"features/{layer}/{stat}"])), (layer, stat)


def test_every_callbacks_module_class_target_resolves() -> None:
    """Issue 9 item 11: `_target_: callbacks.<module>.<Class>` resolves for every class of every
    module (callbacks/__init__.py once re-exported a function `gram_matrix` over its module)."""
    import importlib
    import pkgutil

    from hydra.utils import get_class, instantiate
    from lightning.pytorch.callbacks import Callback

    modules = [m.name for m in pkgutil.iter_modules(callbacks.__path__)]
    assert {"gram_matrix", "feature_monitor", "grad_norm", "image_logging"} <= set(modules)
    assert not set(callbacks.__all__) & set(modules), "a package-level name shadows a submodule"
    checked = []
    for name in modules:
        module = importlib.import_module(f"callbacks.{name}")
        assert getattr(callbacks, name) is module, f"callbacks.{name} is not the module"
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, Callback):
                assert get_class(f"callbacks.{name}.{cls_name}") is cls
                checked.append(cls_name)
    assert {"GramMatrixCallback", "FeatureMonitorCallback", "GradNormMonitor", "TerminateOnNaN"} <= set(checked)
    node = compose("callbacks=gram").callbacks.gram_matrix
    node._target_ = "callbacks.gram_matrix.GramMatrixCallback"
    assert isinstance(instantiate(node), callbacks.GramMatrixCallback)


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
def test_nan_job_fails_and_the_next_job_of_the_multirun_still_runs(tmp_path: Path) -> None:
    proc = run_py(
        "-m",
        "callbacks=terminate_on_nan",
        "+callbacks.poison._target_=tests.support.callback_fits.PoisonWeights",
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
