"""explain.yaml's keys are checked before anything loads: each bad value, one line naming its key."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from runner.explain.inputs import ExplainInputs, check_inputs

from tests.support.paths import REPO


def _cfg(**overrides: Any) -> DictConfig:
    cfg = OmegaConf.load(REPO / "conf" / "explain.yaml")
    cfg.pop("defaults")
    cfg.pop("hydra")
    cfg.ckpt_path = "no/such/run"  # never opened: inputs are checked first
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_defaults_give_every_key() -> None:
    inputs = check_inputs(_cfg())
    assert isinstance(inputs, ExplainInputs)
    assert inputs.methods == ["gradcam", "gradcam++", "integrated_gradients"]
    assert inputs.method_kwargs == {"integrated_gradients": {"steps": 50}}
    assert (inputs.num_samples, inputs.batch_size, inputs.num_features, inputs.seed) == (8, 32, 16, 42)
    assert (inputs.detection_threshold, inputs.max_detections, inputs.metric_images) == (0.5, 10, None)
    assert (inputs.colormap, inputs.alpha, inputs.metrics, inputs.device) == ("viridis", 0.4, False, torch.device("cpu"))
    assert inputs.weights == "model" and check_inputs(_cfg(weights="ema")).weights == "ema"
    assert check_inputs(_cfg(methods=["GradCAM++", "gradcam++"])).methods == ["gradcam++"]  # aliases, no repeats


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("methods", ["gradcam", "nope"], "methods: unknown method 'nope'"),
        ("methods", [], "methods is empty; choose from"),
        ("methods", 3, "methods must be a list"),
        ("method_kwargs", {"gradcm": {}}, "method_kwargs: unknown method 'gradcm'"),
        ("method_kwargs", {"gradcam": 3}, "method_kwargs.gradcam must be a mapping"),
        ("images", 5, "images must be a list"),
        ("features", 5, "features must be a list"),
        ("target_class", -1, "target_class must be null"),
        ("num_samples", 0, "num_samples must be an int >= 1, got 0"),
        ("batch_size", True, "batch_size must be an int >= 1, got True"),
        ("num_features", 0, "num_features must be an int >= 1"),
        ("metric_images", 0, "metric_images must be None or an int >= 1, got 0"),
        ("metric_images", "all", "metric_images must be null"),
        ("max_detections", 0, "max_detections must be an int >= 1, got 0"),
        ("detection_threshold", 1.5, "detection_threshold must be a number in \\[0, 1\\], got 1.5"),
        ("alpha", -0.1, "alpha must be a number in \\[0, 1\\]"),
        ("seed", "x", "seed must be null or an int, got 'x'"),
        ("metrics", "yes", "metrics must be true or false, got 'yes'"),
        ("metric_kwargs", 3, "metric_kwargs must be a mapping"),
        ("device", "tpu", "device can be cpu, cuda, cuda:<index> or auto, got 'tpu'"),
        ("colormap", "nocmap", "colormap"),
        ("weights", "swa", "weights can be model or ema, got 'swa'"),
        ("ckpt_path", "", "ckpt_path is required"),
        ("ckpt_path", "???", "ckpt_path is required"),
    ],
)
def test_each_bad_key_is_named_in_one_line(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        check_inputs(_cfg(**{key: value}))
    text = str(caught.value)
    assert "\n" not in text and key.split(".")[0] in text


def test_cuda_without_a_device_is_refused_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without one
    with pytest.raises(ValueError, match="device=cuda but no CUDA device is available"):
        check_inputs(_cfg(device="cuda"))
    assert check_inputs(_cfg(device="auto")).device == torch.device("cpu")


def test_check_inputs_names_the_field() -> None:
    from omegaconf import OmegaConf

    base = OmegaConf.load(REPO / "conf" / "explain.yaml")
    base.pop("defaults")
    base.pop("hydra")
    base.ckpt_path = "x"
    checked = check_inputs(base)
    assert checked.methods == ["gradcam", "gradcam++", "integrated_gradients"]
    for key, value, message in [
        ("methods", ["gradcam", "nope"], "methods: unknown method 'nope'; available: gradcam"),
        ("methods", [], "methods is empty; choose from gradcam"),
        ("target_class", -1, "target_class must be null"),
        ("device", "tpu", "device can be cpu, cuda"),
        ("num_samples", 0, "num_samples must be an int >= 1"),
        ("batch_size", 0, "batch_size must be an int >= 1"),
        ("colormap", "nocmap", "colormap"),
        ("weights", "swa", "weights can be model or ema, got 'swa'"),
    ]:
        cfg = base.copy()
        cfg[key] = value
        with pytest.raises(ValueError, match=message):
            check_inputs(cfg)
    cfg = base.copy()
    cfg.method_kwargs = {"gradcm": {}}
    with pytest.raises(ValueError, match="method_kwargs: unknown method 'gradcm'"):
        check_inputs(cfg)
    cfg = base.copy()
    cfg.ckpt_path = "???"
    with pytest.raises(ValueError, match="ckpt_path is required"):
        check_inputs(cfg)
