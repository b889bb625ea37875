"""``explain.py`` on a detection run: per image, per detection maps (``interpret.explain_detection``).

Called by :func:`runner.explain.explain` when the checkpoint's model holds a torchvision detector
(``model.detector``, this project's ``ObjectDetector``). Writes, in the output directory:

- ``detections/<NN>_<image>.png``: the image with every detection's box, label and score;
- ``overlays/<NN>_<image>_<method>_<KK>.png``: detection ``KK``'s heatmap with its box;
- ``grid.png``: a row per image: its detections, then per method the per-pixel maximum of its maps;
- ``maps.npz``: ``map_<method>_<NN>`` ``(N_i, H, W)`` per image, ``boxes_<NN>``, ``labels_<NN>``, ``scores_<NN>``;
- ``metrics.csv`` (``metrics=true``): the pointing game on boxes (the map's maximum inside the
  detection's box, :func:`interpret.metrics.box_pointing_game`) of each method over the run's
  validation images (``metric_images`` of them, null: all), with the random-map baseline beside it;
- ``manifest.json`` (``"task": "detection"``) and ``report.html``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

log = logging.getLogger(__name__)

__all__ = ["explain_detections", "pointing_game_on_boxes"]


def _file_method(method: str) -> str:
    return method.replace("++", "pp").replace("+", "p")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "image"


def _explain(model: torch.nn.Module, image: Any, method: str, threshold: float, max_detections: int,
             kwargs: dict[str, Any]) -> Any:
    from interpret import explain_detection

    kwargs = dict(kwargs)
    if method in ("gradcam", "gradcam++") and kwargs.get("target_layer") is None:
        # the model's own CAM layer (ObjectDetector.cam_layer: the head's classification tower), else interpret's
        kwargs["target_layer"] = getattr(model, "cam_layer", None)

    with warnings.catch_warnings():  # "no detection above the threshold": the image just has none
        warnings.simplefilter("ignore", UserWarning)
        return explain_detection(model, image, method=method, detection_threshold=threshold,
                                 max_detections=max_detections, **kwargs)


def _true_positives(result: Any, target: dict[str, torch.Tensor] | None, iou: float = 0.5) -> torch.Tensor:
    """Which detections match a ground-truth box of their own class (IoU >= ``iou``); all False without targets."""
    from torchvision.ops import box_iou

    matched = torch.zeros(len(result), dtype=torch.bool)
    if target is None or len(result) == 0 or len(target["boxes"]) == 0:
        return matched
    overlap = box_iou(result.boxes.float(), target["boxes"].float())
    same = result.labels.view(-1, 1) == target["labels"].view(1, -1)
    return ((overlap >= iou) & same).any(dim=1)


def pointing_game_on_boxes(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    methods: list[str],
    method_kwargs: dict[str, dict[str, Any]],
    threshold: float,
    max_detections: int,
    seed: int = 0,
    n_bootstrap: int = 1000,
    targets: list[dict[str, torch.Tensor]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Pointing game on boxes of each method and of a random map over ``images``.

    ``box_pointing_game`` scores every detection (score >= ``threshold``); with ``targets``,
    ``box_pointing_game_tp`` scores only the true positives (a ground-truth box of the detection's
    class at IoU >= 0.5): a map that explains a *misclassified* box's class logit rightly points at
    an object of that class elsewhere, which the first counts as a miss.

    Returns the metrics.csv rows (method, metric, direction, mean, ci_low, ci_high, n, excluded,
    baseline) and the seconds each method took.
    """
    from interpret.metrics import bootstrap_interval
    from interpret.metrics.boxes import box_pointing_game, random_box_pointing_game

    hits: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    positives: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    chance: list[torch.Tensor] = []
    seconds: dict[str, float] = {}
    for method in methods:
        started = time.perf_counter()
        for index, image in enumerate(images):
            result = _explain(model, image, method, threshold, max_detections, method_kwargs.get(method, {}))
            if len(result) == 0:
                continue
            hits[method].append(box_pointing_game(result.maps, result.boxes).scores)
            positives[method].append(_true_positives(result, targets[index] if targets is not None else None))
            if method == methods[0]:  # the same detections for every method: one random baseline
                size = (int(result.maps.shape[-2]), int(result.maps.shape[-1]))
                chance.append(random_box_pointing_game(result.boxes, size, seed=seed + index).scores)
        seconds[method] = round(time.perf_counter() - started, 4)
    metrics = ["box_pointing_game"] + (["box_pointing_game_tp"] if targets is not None else [])
    tp_mask = torch.cat(positives[methods[0]]) if positives[methods[0]] else torch.zeros(0, dtype=torch.bool)
    rows = []
    for name, values, baseline in [*((m, hits[m], False) for m in methods), ("random", chance, True)]:
        scores = torch.cat(values) if values else torch.zeros(0)
        for metric in metrics:
            chosen = scores if metric == "box_pointing_game" else scores[tp_mask]
            summary = bootstrap_interval(chosen, n_bootstrap=n_bootstrap, seed=seed)
            rows.append({"method": name, "metric": metric, "direction": "higher", "mean": summary.mean,
                         "ci_low": summary.low, "ci_high": summary.high, "n": summary.n, "excluded": summary.excluded,
                         "baseline": baseline})
    return rows, seconds


def explain_detections(
    cfg: DictConfig,
    inputs: Any,
    ckpt: Path,
    run_dir: Path,
    model: torch.nn.Module,
    datamodule: Any,
    pictures: list[Image.Image],
    output_dir: Path,
    manifest_base: dict[str, Any],
) -> dict[str, Any]:
    """The detection branch of ``explain.py`` (see the module docstring); returns the manifest."""
    from interpret.visualize import draw_boxes, image_to_uint8, make_grid, overlay_heatmap, upscale

    threshold = float(cfg.get("detection_threshold", 0.5))
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"detection_threshold must be in [0, 1], got {threshold!r}")
    max_detections = int(cfg.get("max_detections", 10))
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections!r}")
    class_names = list(getattr(datamodule, "class_names", []) or [])

    def name_of(label: int) -> str:
        return class_names[label] if 0 <= label < len(class_names) else f"class {label}"

    targets: list[dict[str, torch.Tensor] | None]
    if inputs.images:
        images: list[Any] = [p.convert("RGB") for p in pictures]
        names = [Path(p).name for p in inputs.images]
        targets = [None] * len(images)
    else:
        batch, sample_targets = datamodule.sample_images(int(cfg.get("num_samples", 8)))
        images = list(batch.unbind(0))
        names = [f"sample_{i:02d}" for i in range(len(images))]
        targets = list(sample_targets)
    log.info(f"Explaining the detections of {len(images)} image(s) with {', '.join(inputs.methods)}")

    results: dict[str, list[Any]] = {}
    runtimes: dict[str, float] = {}
    for method in inputs.methods:
        kwargs = dict(inputs.method_kwargs.get(method, {}))
        started = time.perf_counter()
        results[method] = [_explain(model, image, method, threshold, max_detections, kwargs) for image in images]
        runtimes[method] = round(time.perf_counter() - started, 4)
        count = sum(len(r) for r in results[method])
        log.info(f"{method}: {runtimes[method]:.2f} s for {count} detection(s) in {len(images)} image(s)")

    first = results[inputs.methods[0]]
    alpha, colormap = float(cfg.get("alpha", 0.4)), str(cfg.get("colormap", "viridis"))
    (output_dir / "overlays").mkdir(parents=True, exist_ok=True)
    (output_dir / "detections").mkdir(parents=True, exist_ok=True)
    tiles, captions, arrays = [], [], {}
    image_entries = []
    for index, (name, base) in enumerate(zip(names, first, strict=True)):
        stem = f"{index:02d}_{_safe(Path(name).stem)}"
        photo = upscale(np.ascontiguousarray(base.image), 128)
        scale = photo.shape[0] / base.image.shape[0]

        def scaled(result: Any) -> list[tuple[float, ...]]:
            return [tuple(float(v) * scale for v in box) for box in result.boxes]

        labels = [f"{name_of(int(lab))} {float(s):.2f}" for lab, s in zip(base.labels, base.scores)]
        boxed = draw_boxes(photo, scaled(base), labels)
        Image.fromarray(boxed).save(output_dir / "detections" / f"{stem}.png")
        tiles.append(boxed)
        truth = targets[index]
        captions.append([name[:24], f"{len(base)} detection(s)" + (f", {len(truth['boxes'])} true" if truth else "")])
        arrays[f"boxes_{index:02d}"] = base.boxes.numpy()
        arrays[f"labels_{index:02d}"] = base.labels.numpy()
        arrays[f"scores_{index:02d}"] = base.scores.numpy()
        overlays = []
        for method in inputs.methods:
            result = results[method][index]
            arrays[f"map_{_file_method(method)}_{index:02d}"] = result.maps.numpy()
            for k in range(len(result)):
                heat = overlay_heatmap(photo, result.maps[k], alpha=alpha, colormap=colormap)
                label = f"{name_of(int(result.labels[k]))} {float(result.scores[k]):.2f}"
                path = output_dir / "overlays" / f"{stem}_{_file_method(method)}_{k:02d}.png"
                Image.fromarray(draw_boxes(heat, [scaled(result)[k]], [label])).save(path)
                overlays.append(str(path.relative_to(output_dir)))
            combined = overlay_heatmap(photo, result.combined, alpha=alpha, colormap=colormap)
            tiles.append(draw_boxes(combined, scaled(result)))
            captions.append([method, f"{len(result)} map(s)"])
        image_entries.append({
            "name": name, "source": inputs.images[index] if inputs.images else "sample",
            "true_objects": int(len(truth["boxes"])) if truth else None,
            "detections": [{"box": [round(float(v), 2) for v in box], "label": int(lab), "class": name_of(int(lab)),
                            "score": round(float(s), 4)} for box, lab, s in zip(base.boxes, base.labels, base.scores)],
            "overlays": overlays,
        })
    grid = make_grid(tiles, captions, ncols=1 + len(inputs.methods), min_tile=128,
                     title=f"{ckpt.name}: detections, then {', '.join(inputs.methods)} (max over detections)")
    Image.fromarray(grid).save(output_dir / "grid.png")
    np.savez_compressed(output_dir / "maps.npz", methods=np.array(inputs.methods), images=np.array(names), **arrays)

    metrics_file = None
    metric_seconds = None
    if cfg.get("metrics", False):
        if datamodule is None or getattr(datamodule, "val_set", None) is None and not hasattr(datamodule, "setup"):
            raise ValueError("metrics=true on a detection run needs the run's datamodule (its validation set)")
        datamodule.setup("fit")
        limit = cfg.get("metric_images")
        count = len(datamodule.val_set) if limit is None else min(int(limit), len(datamodule.val_set))
        items = [datamodule.val_set[i] for i in range(count)]
        log.info(f"Scoring the methods: pointing game on boxes over {count} validation image(s)")
        rows, metric_seconds = pointing_game_on_boxes(
            model, [image for image, _ in items], inputs.methods, inputs.method_kwargs, threshold, max_detections,
            seed=int(cfg.get("seed") or 0), n_bootstrap=int(inputs.metric_kwargs.get("n_bootstrap", 1000)),
            targets=[target for _, target in items],
        )
        metrics_file = "metrics.csv"
        with open(output_dir / metrics_file, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        _print_rows(rows)

    manifest = {
        **manifest_base,
        "task": "detection",
        "methods": inputs.methods,
        "method_kwargs": inputs.method_kwargs,
        "runtime_s": runtimes,
        "detection_threshold": threshold,
        "max_detections": max_detections,
        "class_names": class_names,
        "images": image_entries,
        "metrics": metrics_file,
        "metric_runtime_s": metric_seconds,
        "features": [],
    }
    manifest["files"] = sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*")
                               if p.is_file() and p.suffix != ".log")
    (output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _print_rows(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Explanation quality: pointing game on boxes, higher is better (mean [95% interval], n detections)")
    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    table.add_column("method")
    for metric in metrics:
        table.add_column(metric + (" (all detections)" if metric == "box_pointing_game" else " (true positives)"))
    for method in dict.fromkeys(row["method"] for row in rows):
        cells = {row["metric"]: row for row in rows if row["method"] == method}
        table.add_row(method, *(f"{cells[m]['mean']:.3f} [{cells[m]['ci_low']:.3f}, {cells[m]['ci_high']:.3f}] n={cells[m]['n']}"
                                for m in metrics), style="dim" if cells[metrics[0]]["baseline"] else None)
    Console(width=160).print(table)
