"""Explain a trained checkpoint: ``python explain.py ckpt_path=<run dir or .ckpt>``.

:func:`run` is what ``explain.py`` calls; :func:`explain` is the straight-line pipeline:
checks -> checkpoint -> saved config -> model (+ weights) -> normalisation -> images -> maps per
method -> overlays, grid, ``maps.npz`` -> metrics (optional) -> feature maps (optional) -> manifest.

The model and its normalisation are rebuilt from the run's saved config (``.hydra/config.yaml``
or ``config_resolved.yaml`` of the run directory); a checkpoint outside a run directory is
rebuilt from the hyperparameters stored in the checkpoint itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from PIL import Image

from runner.errors import full_error_requested, short_message
from runner.paths import close_log_files
from runner.provenance import git_commit, library_versions

log = logging.getLogger(__name__)

__all__ = ["ExplainInputs", "explain", "find_checkpoint", "load_checkpoint_model", "run", "sha256_of"]

CONFIG_FILES = (Path(".hydra") / "config.yaml", Path("config_resolved.yaml"))
MAPS_FILE = "maps.npz"
GRID_FILE = "grid.png"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.csv"
PACKAGES = ("torch", "timm", "lightning", "torchvision", "numpy", "vision-runner")


# ---------------------------------------------------------------------------- checkpoint
def _best_from_metrics(run_dir: Path) -> Path | None:
    """The best checkpoint a finished run recorded in its ``metrics.json``, if it still exists."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        best = json.loads(metrics.read_text()).get("best_model_path") or ""
    except (OSError, ValueError):
        return None
    if not best:
        return None
    path = Path(best)
    if not path.is_absolute():
        path = run_dir / path
    if path.is_file():
        return path
    local = run_dir / "checkpoints" / path.name  # a run directory that was moved
    return local if local.is_file() else None


def find_checkpoint(ckpt_path: Any) -> Path:
    """Turn ``ckpt_path`` (a ``.ckpt`` file or a run directory) into a checkpoint file.

    A run directory gives its best checkpoint (``metrics.json``'s ``best_model_path``, else the
    newest ``checkpoints/*.ckpt`` that is not ``last*.ckpt``), else ``checkpoints/last.ckpt``.

    Raises:
        ValueError: ``ckpt_path`` not given; FileNotFoundError: nothing there, or no checkpoint in it.
    """
    if ckpt_path is None or (isinstance(ckpt_path, str) and not ckpt_path.strip()):
        raise ValueError("ckpt_path is required: a checkpoint file or a run directory, e.g. ckpt_path=outputs/train/runs/<run>")
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(ckpt_path)))
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"ckpt_path: no such checkpoint file or run directory {str(path)!r} "
            "(give a .ckpt file or a run directory such as outputs/train/runs/<run>)"
        )
    best = _best_from_metrics(path)
    if best is not None:
        return best
    for folder in (path / "checkpoints", path):
        files = sorted((p for p in folder.glob("*.ckpt") if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
        best_files = [p for p in files if not p.name.startswith("last")]
        if best_files:
            return best_files[0]
        if files:
            return files[0]
    raise FileNotFoundError(f"ckpt_path: run directory {str(path)!r} has no checkpoint (no checkpoints/*.ckpt)")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run_dir_of(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def _saved_config(run_dir: Path) -> DictConfig | None:
    for name in CONFIG_FILES:
        if (run_dir / name).is_file():
            cfg = OmegaConf.load(run_dir / name)
            if isinstance(cfg, DictConfig) and "model" in cfg:
                return cfg
    return None


def load_checkpoint_model(ckpt: Path, train_cfg: DictConfig | None, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model (from the run's config, else the checkpoint's hyperparameters) and load its weights."""
    import hydra

    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input
        raise ValueError(f"ckpt_path: {str(ckpt)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path: {str(ckpt)!r} is not a Lightning checkpoint of this project (no state_dict)")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    num_classes = hparams.get("num_classes")
    if train_cfg is not None:
        node = OmegaConf.to_container(train_cfg.model, resolve=True)
        assert isinstance(node, dict)
        node.update({"pretrained": False, "weights_path": None})
        if "compile" in node:
            node["compile"] = False
        if num_classes is not None:
            node["num_classes"] = num_classes
        log.info(f"Instantiating model <{node.get('_target_')}> with backbone <{node.get('backbone')}>")
        model = hydra.utils.instantiate(node)
    elif "head" in hparams and "out_indices" in hparams:  # a detector of this project (runner.models.ObjectDetector)
        from runner.models import ObjectDetector

        hparams.update({"pretrained": False, "weights_path": None})
        log.info(f"Instantiating model <runner.models.ObjectDetector> with backbone <{hparams.get('backbone')}> (from the checkpoint)")
        model = ObjectDetector(**hparams)
    else:
        from runner.models import ImageClassifier

        if not hparams.get("backbone"):
            raise ValueError(
                f"ckpt_path: {str(ckpt)!r} has no run config next to it (.hydra/config.yaml) and no model "
                "hyperparameters inside it; give a checkpoint of a run of this project"
            )
        hparams.update({"pretrained": False, "weights_path": None, "compile": False})
        log.info(f"Instantiating model <runner.models.ImageClassifier> with backbone <{hparams['backbone']}> (from the checkpoint)")
        model = ImageClassifier(**hparams)
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"ckpt_path: the weights of {str(ckpt)!r} do not fit the model of its config "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[:3]})"
        )
    model.eval().to(device)
    return model, checkpoint


# ---------------------------------------------------------------------------- config checks
def _as_list(value: Any, field_name: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, ListConfig | list | tuple):
        return list(OmegaConf.to_container(value) if isinstance(value, ListConfig) else value)
    if isinstance(value, str):
        return [value]
    raise ValueError(f"{field_name} must be a list, e.g. {field_name}=[a,b], got {value!r}")


@dataclass
class ExplainInputs:
    """The checked settings of one explain run."""

    ckpt_path: Any
    images: list[str]
    methods: list[str]
    method_kwargs: dict[str, dict[str, Any]]
    features: list[str]
    target_class: int | None
    device: torch.device
    batch_size: int = 32
    metric_kwargs: dict[str, Any] = field(default_factory=dict)


def check_inputs(cfg: DictConfig) -> ExplainInputs:
    """Check every field before anything is loaded; errors name the field and what is allowed."""
    from interpret.registry import available_methods, canonical_method

    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ValueError("ckpt_path is required: a checkpoint file or a run directory, e.g. ckpt_path=outputs/train/runs/<run>")
    methods_raw = _as_list(cfg.get("methods"), "methods")
    if not methods_raw:
        raise ValueError(f"methods is empty; choose from {', '.join(available_methods())}")
    methods = []
    for method in methods_raw:
        if not isinstance(method, str):
            raise ValueError(f"methods: {method!r} is not a method name; available: {', '.join(available_methods())}")
        try:
            name = canonical_method(method)
        except ValueError as err:
            raise ValueError(f"methods: {err}") from None
        if name not in methods:
            methods.append(name)
    kwargs_raw = cfg.get("method_kwargs") or {}
    kwargs_raw = OmegaConf.to_container(kwargs_raw, resolve=True) if OmegaConf.is_config(kwargs_raw) else dict(kwargs_raw)
    method_kwargs: dict[str, dict[str, Any]] = {}
    for key, value in kwargs_raw.items():
        try:
            name = canonical_method(str(key))
        except ValueError as err:
            raise ValueError(f"method_kwargs: {err}") from None
        if not isinstance(value, dict):
            raise ValueError(f"method_kwargs.{key} must be a mapping of keywords, e.g. {{steps: 16}}, got {value!r}")
        method_kwargs[name] = value
    images = [str(p) for p in _as_list(cfg.get("images"), "images")]
    features = [str(p) for p in _as_list(cfg.get("features"), "features")]
    target = cfg.get("target_class")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
        raise ValueError(f"target_class must be null (the predicted class) or a class index >= 0, got {target!r}")
    num_samples = cfg.get("num_samples", 8)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    batch_size = cfg.get("batch_size", 32)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    device_name = str(cfg.get("device", "cpu"))
    if device_name not in ("cpu", "cuda", "auto") and not device_name.startswith("cuda:"):
        raise ValueError(f"device can be cpu, cuda, cuda:<index> or auto, got {device_name!r}")
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device_name} but no CUDA device is available; use device=cpu or device=auto")
    if not isinstance(cfg.get("metrics", False), bool):
        raise ValueError(f"metrics must be true or false, got {cfg.get('metrics')!r}")
    metric_kwargs = cfg.get("metric_kwargs") or {}
    metric_kwargs = OmegaConf.to_container(metric_kwargs, resolve=True) if OmegaConf.is_config(metric_kwargs) else dict(metric_kwargs)
    from interpret.visualize import check_colormap

    check_colormap(cfg.get("colormap", "viridis"), "colormap")
    return ExplainInputs(
        ckpt_path=cfg.ckpt_path,
        images=images,
        methods=methods,
        method_kwargs=method_kwargs,
        features=features,
        target_class=target,
        device=torch.device(device_name),
        batch_size=batch_size,
        metric_kwargs=metric_kwargs,
    )


# ---------------------------------------------------------------------------- helpers
def _seed(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.replace("+", "pp") or "image"


def _method_file_name(method: str) -> str:
    return method.replace("++", "pp").replace("+", "p")


def _datamodule(train_cfg: DictConfig | None, checkpoint: dict, model: torch.nn.Module, need: bool) -> Any:
    """The run's datamodule with the normalisation it trained with (None when it cannot be built and is not needed)."""
    import hydra

    if train_cfg is None or "data" not in train_cfg:
        if need:
            raise ValueError(
                "images is empty and the checkpoint has no run config next to it (.hydra/config.yaml) to take "
                "sample images from; give images=[a.png,...]"
            )
        return None
    try:
        datamodule = hydra.utils.instantiate(train_cfg.data)
    except Exception as err:  # noqa: BLE001
        if need:
            raise ValueError(f"images is empty and the run's datamodule cannot be rebuilt: {short_message(err)}") from err
        log.warning(f"The run's datamodule cannot be rebuilt ({short_message(err)}); class names are indices")
        return None
    state = checkpoint.get(type(datamodule).__qualname__)
    if isinstance(state, dict) and hasattr(datamodule, "load_state_dict"):
        datamodule.load_state_dict(state)
    elif hasattr(datamodule, "set_normalization") and hasattr(model, "data_config"):
        datamodule.set_normalization(model.data_config["mean"], model.data_config["std"])
    return datamodule


def _normalization(datamodule: Any, checkpoint: dict, model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if datamodule is not None and getattr(datamodule, "mean", None) is not None:
        return tuple(datamodule.mean), tuple(datamodule.std)
    for value in checkpoint.values():  # a datamodule's saved state: {"mean": ..., "std": ...}
        if isinstance(value, dict) and set(value) >= {"mean", "std"} and not isinstance(value.get("mean"), torch.Tensor):
            return tuple(value["mean"]), tuple(value["std"])
    config = getattr(model, "data_config", None) or {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    return tuple(config["mean"]), tuple(config["std"])


def _input_size(model: torch.nn.Module, checkpoint: dict) -> tuple[int, int]:
    size = (checkpoint.get("hyper_parameters") or {}).get("image_size")
    if isinstance(size, int):
        return size, size
    config = getattr(model, "data_config", None) or {}
    shape = config.get("input_size") or (3, 224, 224)
    return int(shape[-2]), int(shape[-1])


def _print_table(table: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title="Explanation quality (mean [95% interval] over the images)")
    out.add_column("method")
    for metric in table.metrics:
        out.add_column(table.header(metric), justify="right")
    for method in table.methods:
        style = "dim" if method in ("random", "centre_gaussian") else None
        out.add_row(method, *[str(table.summaries[(method, m)]) for m in table.metrics], style=style)
    console = Console(width=160)
    console.print(out)
    for metric in table.metrics:
        console.print(table.recommendations[metric])


# ---------------------------------------------------------------------------- pipeline
def _provenance(cfg: DictConfig, inputs: ExplainInputs, ckpt: Path, run_dir: Path) -> dict[str, Any]:
    """The manifest's first keys, for classification and detection alike: checkpoint, code, libraries, seed, device."""
    config = next((run_dir / n for n in CONFIG_FILES if (run_dir / n).is_file()), None)
    return {
        "checkpoint": {"path": str(ckpt), "sha256": sha256_of(ckpt), "run_dir": str(run_dir),
                       "config": str(config) if config else None},
        "git_commit": git_commit(),
        "versions": library_versions(PACKAGES),
        "seed": cfg.get("seed"),
        "device": str(inputs.device),
    }


def explain(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Explain the checkpoint of ``cfg.ckpt_path`` into ``output_dir``; return the manifest."""
    from interpret.metrics import evaluate_methods
    from interpret.registry import get_explainer
    from interpret.visualize import image_to_uint8, make_grid, overlay_heatmap

    inputs = check_inputs(cfg)
    ckpt = find_checkpoint(inputs.ckpt_path)
    pictures: list[Image.Image] = []
    if inputs.images:
        from interpret.images import load_image

        pictures = [load_image(p, what="images") for p in inputs.images]  # unreadable files fail before the model loads
    log.info(f"Checkpoint: {ckpt}")
    _seed(cfg.get("seed"))

    run_dir = _run_dir_of(ckpt)
    train_cfg = _saved_config(run_dir)
    if train_cfg is None:
        log.warning(f"No run config in {run_dir}: the model is rebuilt from the checkpoint's hyperparameters")
    model, checkpoint = load_checkpoint_model(ckpt, train_cfg, inputs.device)
    datamodule = _datamodule(train_cfg, checkpoint, model, need=not inputs.images)
    mean, std = _normalization(datamodule, checkpoint, model)
    size = _input_size(model, checkpoint)
    class_names = list(getattr(datamodule, "class_names", []) or [])
    if hasattr(model, "detector"):  # an object detector: per image, per detection maps
        return _explain_detector(cfg, inputs, ckpt, run_dir, model, datamodule, pictures, output_dir, mean, std, size)

    masks = None
    labels: list[int | None]
    if inputs.images:
        from interpret.images import pils_to_batch

        batch = pils_to_batch(pictures, size, mean, std)
        names = [Path(p).name for p in inputs.images]
        photos = [image_to_uint8(p.convert("RGB")) for p in pictures]
        labels = [None] * len(pictures)
    else:
        n = int(cfg.get("num_samples", 8))
        batch, label_tensor = datamodule.sample_images(n)
        if hasattr(datamodule, "sample_masks"):
            masks = datamodule.sample_masks(n)
        names = [f"sample_{i:02d}" for i in range(batch.shape[0])]
        # sample images are model-sized (32 px on digits/shapes): overlays are drawn 4x larger or more
        factor = max(1, -(-128 // max(1, min(size))))
        photos = [image_to_uint8(img, mean, std).repeat(factor, axis=0).repeat(factor, axis=1) for img in batch]
        labels = [int(v) for v in label_tensor]
    batch = batch.to(inputs.device)
    log.info(f"Explaining {batch.shape[0]} image(s) at {size[0]}x{size[1]} with {', '.join(inputs.methods)}")

    if inputs.features:
        from interpret.layers import resolve_layer

        for layer in inputs.features:
            try:
                resolve_layer(model, layer)
            except ValueError as err:
                raise ValueError(f"features: {str(err).replace('target_layer', 'layer', 1)}") from None

    chunk = inputs.batch_size
    with torch.no_grad():
        probabilities = torch.cat([model(batch[i : i + chunk]).float().softmax(dim=1).cpu()
                                   for i in range(0, batch.shape[0], chunk)])
    predicted = probabilities.argmax(dim=1)
    if inputs.target_class is not None and inputs.target_class >= probabilities.shape[1]:
        raise ValueError(f"target_class={inputs.target_class} but the model has {probabilities.shape[1]} classes (0 to {probabilities.shape[1] - 1})")
    targets = predicted if inputs.target_class is None else torch.full_like(predicted, inputs.target_class)

    def class_name(index: int) -> str:
        return class_names[index] if 0 <= index < len(class_names) else str(index)

    maps: dict[str, np.ndarray] = {}
    runtimes: dict[str, float] = {}
    overlays_dir = output_dir / "overlays"
    overlays_dir.mkdir(parents=True, exist_ok=True)
    alpha, colormap = float(cfg.get("alpha", 0.4)), str(cfg.get("colormap", "viridis"))
    overlays: dict[str, list[np.ndarray]] = {}
    for method in inputs.methods:
        explainer = get_explainer(method, model, mean=mean, std=std, input_size=size, **inputs.method_kwargs.get(method, {}))
        started = time.perf_counter()
        heatmaps = explainer.explain_batch(batch, batch_size=chunk, target_class=targets.to(inputs.device))
        if inputs.device.type == "cuda":
            torch.cuda.synchronize()
        runtimes[method] = round(time.perf_counter() - started, 4)
        array = heatmaps.detach().float().cpu().numpy().reshape(batch.shape[0], *batch.shape[-2:])
        maps[method] = array
        overlays[method] = []
        for index, (name, photo) in enumerate(zip(names, photos, strict=True)):
            overlay = overlay_heatmap(photo, array[index], alpha=alpha, colormap=colormap)
            overlays[method].append(overlay)
            Image.fromarray(overlay).save(overlays_dir / f"{index:02d}_{_safe_name(Path(name).stem)}_{_method_file_name(method)}.png")
        log.info(f"{method}: {runtimes[method]:.2f} s for {batch.shape[0]} image(s)")

    tiles, captions = [], []
    for index, name in enumerate(names):
        p = int(predicted[index])
        truth = f" (true {class_name(labels[index])})" if labels[index] is not None else ""
        tiles.append(photos[index])
        captions.append([name[:24], f"{class_name(p)} {float(probabilities[index, p]):.2f}{truth}"])
        for method in inputs.methods:
            tiles.append(overlays[method][index])
            captions.append([method, f"class {class_name(int(targets[index]))}"])
    grid = make_grid(tiles, captions, ncols=1 + len(inputs.methods), min_tile=128,
                     title=f"{ckpt.name}: input, then {', '.join(inputs.methods)}")
    Image.fromarray(grid).save(output_dir / GRID_FILE)
    np.savez_compressed(
        output_dir / MAPS_FILE,
        **{f"map_{_method_file_name(m)}": a for m, a in maps.items()},
        methods=np.array(inputs.methods),
        images=np.array(names),
        targets=targets.numpy(),
        predicted=predicted.numpy(),
        probabilities=probabilities.numpy(),
        **({"masks": masks.cpu().numpy()} if masks is not None else {}),
    )

    table = None
    if cfg.get("metrics", False):
        log.info("Scoring the methods" + (" (with the object masks)" if masks is not None else ""))
        table = evaluate_methods(
            model, batch, targets.to(inputs.device), inputs.methods, masks=masks,
            method_kwargs={m: {"mean": mean, "std": std, **inputs.method_kwargs.get(m, {})} for m in inputs.methods},
            mean=mean, std=std, seed=int(cfg.get("seed") or 0), **inputs.metric_kwargs,
        )
        table.to_csv(output_dir / METRICS_FILE)
        _print_table(table)

    feature_files: list[str] = []
    if inputs.features:
        from interpret.features import FeatureVisualizer

        visualizer = FeatureVisualizer(model, mean=mean, std=std)
        (output_dir / "features").mkdir(exist_ok=True)
        for layer in inputs.features:
            for index, name in enumerate(names):
                path = output_dir / "features" / f"{index:02d}_{_safe_name(Path(name).stem)}_{_safe_name(layer)}.png"
                visualizer.plot_feature_maps(batch[index : index + 1], layer, num_features=int(cfg.get("num_features", 16)),
                                             save_path=path, colormap=colormap)
                feature_files.append(str(path.relative_to(output_dir)))

    manifest = {
        **_provenance(cfg, inputs, ckpt, run_dir),
        "methods": inputs.methods,
        "method_kwargs": inputs.method_kwargs,
        "runtime_s": runtimes,
        "input_size": list(size),
        "normalization": {"mean": list(mean), "std": list(std)},
        "class_names": class_names,
        "images": [
            {"name": name, "source": inputs.images[i] if inputs.images else "sample", "label": labels[i],
             "predicted": int(predicted[i]), "probability": float(probabilities[i, int(predicted[i])]),
             "target": int(targets[i])}
            for i, name in enumerate(names)
        ],
        "masks": masks is not None,
        "metrics": METRICS_FILE if table is not None else None,
        "metric_runtime_s": {k: round(v, 4) for k, v in table.seconds.items()} if table is not None else None,
        "features": feature_files,
        "files": sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*") if p.is_file() and p.suffix != ".log"),
    }
    (output_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    from runner.report import REPORT_FILE, write_report_safely

    if write_report_safely(output_dir) is not None:  # reads manifest.json; a failure only warns
        manifest["files"] = sorted([*manifest["files"], REPORT_FILE])
        (output_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def _explain_detector(cfg: DictConfig, inputs: ExplainInputs, ckpt: Path, run_dir: Path, model: torch.nn.Module,
                      datamodule: Any, pictures: list[Image.Image], output_dir: Path, mean: Any, std: Any,
                      size: tuple[int, int]) -> dict[str, Any]:
    """The detection branch (:mod:`runner.explain_detection`), with the same provenance and report."""
    from runner.explain_detection import explain_detections
    from runner.report import REPORT_FILE, write_report_safely

    if inputs.features:
        raise ValueError("features: feature maps are drawn for classification checkpoints only; leave features empty")
    base = {
        **_provenance(cfg, inputs, ckpt, run_dir),
        "input_size": list(size),
        "normalization": {"mean": list(mean), "std": list(std)},
    }
    manifest = explain_detections(cfg, inputs, ckpt, run_dir, model, datamodule, pictures, output_dir, base)
    if write_report_safely(output_dir) is not None:
        manifest["files"] = sorted([*manifest["files"], REPORT_FILE])
        (output_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of ``explain.py``: explain, print where the files are, or fail in one line.

    Any failure (a missing checkpoint, an unreadable image, an unknown method, ...) prints one
    line ``Error: <what>`` to stderr, removes the output directory Hydra made and exits with
    status 1 (``HYDRA_FULL_ERROR=1`` raises the full traceback instead).
    """
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()
    try:
        manifest = explain(cfg, output_dir)
    except Exception as exc:  # noqa: BLE001 - every failure is reported in one line
        log.debug("".join(traceback.format_exception(exc)))
        close_log_files(output_dir)
        shutil.rmtree(output_dir, ignore_errors=True)
        try:
            output_dir.parent.rmdir()  # outputs/explain/ too, when this run was its only content
        except OSError:
            pass
        if full_error_requested():
            raise
        message = " ".join(short_message(exc).split())
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(1)
    from rich.console import Console

    console = Console(width=160)
    console.print(f"Output dir: {output_dir}")
    console.print(f"Checkpoint: {manifest['checkpoint']['path']}")
    for method, seconds in manifest["runtime_s"].items():
        console.print(f"  {method}: {seconds:.2f} s")
    return manifest
