"""Every key of ``conf/explain.yaml``, checked before anything is loaded: :class:`ExplainInputs`.

:func:`check_inputs` turns the composed config into one frozen dataclass. Each bad value raises a
one-line ``ValueError`` that names the key, what was given and what is allowed; no checkpoint,
image or model is touched before every key has passed.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from interpret.checks import positive_int, unit_interval

__all__ = ["CKPT_PATH_HELP", "WEIGHTS", "ExplainInputs", "check_inputs"]

#: the ``weights`` key: the trained weights, or the EMA average of ``callbacks/ema_weights.py``
WEIGHTS = ("model", "ema")
CKPT_PATH_HELP = "ckpt_path is required: a checkpoint file or a run directory, e.g. ckpt_path=outputs/train/runs/<run>"


@dataclass(frozen=True)
class ExplainInputs:
    """The checked settings of one explain run, one field per key of ``conf/explain.yaml``.

    Attributes:
        ckpt_path: a ``.ckpt`` file or a run directory (resolved by ``find_checkpoint``).
        images: image files to explain; empty: the run's own sample images.
        methods: canonical method names, in order, without repeats.
        method_kwargs: per canonical method, its constructor keywords.
        features: layers to draw feature maps of (classification only).
        target_class: the class to explain; None: each image's prediction.
        device: where the model runs.
        batch_size: images per forward/backward pass.
        metric_kwargs: keywords of ``interpret.metrics.evaluate_methods``.
        num_samples: how many of the run's sample images when ``images`` is empty.
        metrics: score the methods (``metrics.csv``).
        num_features: channels per feature-map figure.
        seed: seed of torch, numpy and python; None: unseeded.
        detection_threshold: detection runs: the least score of an explained detection.
        max_detections: detection runs: at most this many detections per image.
        metric_images: detection runs: validation images scored (None: all).
        colormap: the overlays' matplotlib colormap.
        alpha: the heatmap's opacity in the overlays.
        weights: which weights of the checkpoint are explained: ``model`` (the trained weights) or
            ``ema`` (the exponential moving average kept by ``callbacks=[default,ema]``).
    """

    ckpt_path: str
    images: list[str]
    methods: list[str]
    method_kwargs: dict[str, dict[str, Any]]
    features: list[str]
    target_class: int | None
    device: torch.device
    batch_size: int = 32
    metric_kwargs: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 8
    metrics: bool = False
    num_features: int = 16
    seed: int | None = 42
    detection_threshold: float = 0.5
    max_detections: int = 10
    metric_images: int | None = None
    colormap: str = "viridis"
    alpha: float = 0.4
    weights: str = "model"


def _as_list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, ListConfig):
        return list(OmegaConf.to_container(value, resolve=True))
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        return [value]
    raise ValueError(f"{key} must be a list, e.g. {key}=[a,b], got {value!r}")


def _as_dict(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping of keywords, got {value!r}")
    return dict(value)


def _ckpt_path(cfg: DictConfig) -> str:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ValueError(CKPT_PATH_HELP)
    value = cfg.get("ckpt_path")
    if value is None or not str(value).strip() or str(value) == "???":
        raise ValueError(CKPT_PATH_HELP)
    return str(value)


def _methods(cfg: DictConfig) -> list[str]:
    from interpret import available_methods, canonical_method

    raw = _as_list(cfg.get("methods"), "methods")
    if not raw:
        raise ValueError(f"methods is empty; choose from {', '.join(available_methods())}")
    methods: list[str] = []
    for method in raw:
        if not isinstance(method, str):
            raise ValueError(f"methods: {method!r} is not a method name; available: {', '.join(available_methods())}")
        try:
            name = canonical_method(method)
        except ValueError as err:
            raise ValueError(f"methods: {err}") from None
        if name not in methods:
            methods.append(name)
    return methods


def _method_kwargs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    from interpret import canonical_method

    checked: dict[str, dict[str, Any]] = {}
    for key, value in _as_dict(cfg.get("method_kwargs"), "method_kwargs").items():
        try:
            name = canonical_method(str(key))
        except ValueError as err:
            raise ValueError(f"method_kwargs: {err}") from None
        if not isinstance(value, dict):
            raise ValueError(f"method_kwargs.{key} must be a mapping of keywords, e.g. {{steps: 16}}, got {value!r}")
        checked[name] = value
    return checked


def _device(cfg: DictConfig) -> torch.device:
    name = str(cfg.get("device", "cpu"))
    if name not in ("cpu", "cuda", "auto") and not name.startswith("cuda:"):
        raise ValueError(f"device can be cpu, cuda, cuda:<index> or auto, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def _bool(cfg: DictConfig, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def _int_or_none(cfg: DictConfig, key: str, default: int | None, allowed: str) -> int | None:
    value = cfg.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"{key} must be {allowed}, got {value!r}")
    return None if value is None else int(value)


def check_inputs(cfg: DictConfig) -> ExplainInputs:
    """Check every key of ``cfg`` (``conf/explain.yaml``) before anything is loaded.

    Args:
        cfg: the composed explain config.

    Returns:
        the checked settings.

    Raises:
        ValueError: one line naming the first bad key, what was given and what is allowed.
    """
    from interpret import check_colormap

    ckpt_path = _ckpt_path(cfg)
    methods = _methods(cfg)
    method_kwargs = _method_kwargs(cfg)
    images = [str(p) for p in _as_list(cfg.get("images"), "images")]
    features = [str(p) for p in _as_list(cfg.get("features"), "features")]
    target = cfg.get("target_class")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
        raise ValueError(f"target_class must be null (the predicted class) or a class index >= 0, got {target!r}")
    num_samples = positive_int(cfg.get("num_samples", 8), "num_samples")
    batch_size = positive_int(cfg.get("batch_size", 32), "batch_size")
    num_features = positive_int(cfg.get("num_features", 16), "num_features")
    metric_images = _int_or_none(cfg, "metric_images", None, "null (all validation images) or an int >= 1")
    if metric_images is not None:
        positive_int(metric_images, "metric_images", allow_none=True)
    max_detections = positive_int(cfg.get("max_detections", 10), "max_detections")
    threshold = unit_interval(cfg.get("detection_threshold", 0.5), "detection_threshold")
    alpha = unit_interval(cfg.get("alpha", 0.4), "alpha")
    seed = _int_or_none(cfg, "seed", 42, "null or an int")
    device = _device(cfg)
    metrics = _bool(cfg, "metrics", False)
    metric_kwargs = _as_dict(cfg.get("metric_kwargs"), "metric_kwargs")
    colormap = cfg.get("colormap", "viridis")
    check_colormap(colormap, "colormap")
    weights = cfg.get("weights", "model")
    if weights not in WEIGHTS:
        raise ValueError(f"weights can be {' or '.join(WEIGHTS)}, got {weights!r}")
    return ExplainInputs(
        ckpt_path=ckpt_path,
        images=images,
        methods=methods,
        method_kwargs=method_kwargs,
        features=features,
        target_class=target,
        device=device,
        batch_size=batch_size,
        metric_kwargs=metric_kwargs,
        num_samples=num_samples,
        metrics=metrics,
        num_features=num_features,
        seed=seed,
        detection_threshold=threshold,
        max_detections=max_detections,
        metric_images=metric_images,
        colormap=str(colormap),
        alpha=alpha,
        weights=str(weights),
    )
