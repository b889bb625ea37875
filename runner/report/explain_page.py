"""The report of an ``explain.py`` directory: provenance, the comparison grid, a row per image with its
figures, the explanation metrics and the feature maps.

The per-image row follows the manifest: a column for each piece of information the images carry
(true label, prediction, probability, true objects, detections) and the image's figures: the files of
``detections/`` and then its ``overlays`` (those the manifest lists, else the files of ``overlays/``),
all named ``NN_<image>...`` (:func:`runner.artifacts.image_stem`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runner.artifacts import (
    DETECTIONS_DIR,
    image_stem,
    method_file_name,
    EXPLAIN_METRICS_FILE,
    GRID_FILE,
    OVERLAYS_DIR,
    Manifest,
)
from runner.report.html import Section, page, render
from runner.report.readers import read_csv_table
from runner.report.values import fmt

__all__ = ["build_explain_report", "detection_grid", "image_figures", "metric_matrix", "sig3"]

ARROWS = {"higher": "↑", "lower": "↓"}


def sig3(value: float) -> str:
    """A number with 3 significant digits, trailing zeros kept (``0.200``, ``12.3``, ``1.23e-05``); "" for NaN."""
    return "" if not math.isfinite(value) else f"{value:#.3g}".rstrip(".").replace(".e", "e")


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def metric_matrix(table: list[list[str]]) -> dict[str, Any] | None:
    """``metrics.csv`` (one row per method and metric) as methods x metrics: each cell's mean and 95%
    interval to 3 significant digits, the best mean of each column marked, the baselines last.

    Returns:
        ``{"metrics": [{"name", "arrow", "direction"}], "rows": [{"method", "baseline", "cells": [{"mean",
        "interval", "best", "n"}]}]}``, or None when the file has none of those columns.
    """
    if not table or not {"method", "metric", "mean"} <= set(table[0]):
        return None
    header = table[0]
    records = [dict(zip(header, row)) for row in table[1:] if len(row) == len(header)]
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    baseline = {r["method"] for r in records if str(r.get("baseline", "")).lower() == "true"}
    methods = [m for m in methods if m not in baseline] + [m for m in methods if m in baseline]
    cell = {(r["method"], r["metric"]): r for r in records}
    direction = {m: next((r.get("direction", "") for r in records if r["metric"] == m), "") for m in metrics}
    best: dict[str, str] = {}
    for metric in metrics:
        scored = [(v, m) for m in methods if math.isfinite(v := _float(cell.get((m, metric), {}).get("mean", "")))]
        if scored and direction[metric] in ARROWS:
            best[metric] = (max(scored) if direction[metric] == "higher" else min(scored))[1]
    rows = []
    for method in methods:
        cells = []
        for metric in metrics:
            r = cell.get((method, metric), {})
            low, high = _float(r.get("ci_low", "")), _float(r.get("ci_high", ""))
            cells.append({"mean": sig3(_float(r.get("mean", ""))), "best": best.get(metric) == method,
                          "interval": f"[{sig3(low)}, {sig3(high)}]" if math.isfinite(low) and math.isfinite(high) else "",
                          "n": r.get("n", "")})
        rows.append({"method": method, "baseline": method in baseline, "cells": cells})
    return {"metrics": [{"name": m, "arrow": ARROWS.get(direction[m], ""), "direction": direction[m]} for m in metrics],
            "rows": rows}


def _files(folder: Path, index: int) -> list[Path]:
    """The files of ``folder`` belonging to image ``index`` (``NN_*``), by name."""
    return sorted(folder.glob(f"{index:02d}_*.png")) if folder.is_dir() else []


def image_figures(output_dir: Path, index: int, image: dict[str, Any]) -> list[Path]:
    """Image ``index``'s figures: its ``detections/`` files, then its overlays (as listed, else as found)."""
    listed = image.get("overlays")
    overlays = ([output_dir / p for p in listed if (output_dir / p).is_file()] if listed is not None
                else _files(output_dir / OVERLAYS_DIR, index))
    return _files(output_dir / DETECTIONS_DIR, index) + overlays


def detection_grid(figures: list[Path], index: int, image: dict[str, Any], methods: list[str]) -> dict[str, Any] | None:
    """A detection image's per-detection maps as a grid: a row per method, a column per detection
    (``overlays/NN_<image>_<method>_KK.png``); None when the image has no such maps."""
    stem = image_stem(index, image.get("name", ""))
    cells: dict[tuple[str, int], Path] = {}
    for path in figures:
        for method in methods:
            prefix = f"{stem}_{method_file_name(method)}_"
            tail = path.stem[len(prefix):]
            if path.stem.startswith(prefix) and tail.isdigit():
                cells[(method, int(tail))] = path
    if not cells:
        return None
    count = max(k for _, k in cells) + 1
    found = image.get("detections") or []
    columns = [f"detection {k}" + (f": {found[k].get('class')} {float(found[k].get('score', math.nan)):.2f}"
                                   if k < len(found) else "") for k in range(count)]
    rows = [{"method": m, "cells": [cells.get((m, k)) for k in range(count)]} for m in methods
            if any((m, k) in cells for k in range(count))]
    return {"columns": columns, "rows": rows}


def _columns(manifest: Manifest, images: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(header, cell of an image) for each piece of information some image carries."""
    names = manifest.extra.get("class_names") or []

    def cls(i: Any) -> str:
        return str(names[i]) if isinstance(i, int) and 0 <= i < len(names) else fmt(i)

    def found(image: dict[str, Any]) -> str:
        detections = image.get("detections") or []
        return ", ".join(f"{d.get('class')} {float(d.get('score', math.nan)):.2f}" for d in detections) or (
            "no detection above the threshold")

    threshold = manifest.extra.get("detection_threshold")
    candidates = [
        ("label", "true", lambda im: cls(im.get("label"))),
        ("predicted", "predicted", lambda im: cls(im.get("predicted"))),
        ("probability", "p", lambda im: float(im.get("probability", math.nan))),
        ("true_objects", "true objects", lambda im: fmt(im.get("true_objects"))),
        ("detections", f"detections (score >= {fmt(threshold)})" if threshold is not None else "detections", found),
    ]
    return [(header, cell) for key, header, cell in candidates if any(key in im for im in images)]


def build_explain_report(output_dir: Path) -> str:
    """The HTML of an ``explain.py`` output directory's report; reads it, writes nothing."""
    output_dir = Path(output_dir)
    manifest = Manifest.read(output_dir) or Manifest()
    extra = manifest.extra
    ckpt = manifest.checkpoint or {}
    versions = extra.get("versions") or {}
    provenance = [
        ("checkpoint", ckpt.get("path", "")), ("sha256", ckpt.get("sha256", "")), ("run config", ckpt.get("config") or ""),
        ("git commit", extra.get("git_commit") or "unknown"), ("seed", fmt(extra.get("seed"))),
        ("device", extra.get("device", "")), ("input size", "x".join(map(str, extra.get("input_size") or []))),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    runtime = [(k, float(v)) for k, v in (manifest.runtime_s or {}).items()]
    images = manifest.images or []
    columns = _columns(manifest, images)
    rows = []
    for index, image in enumerate(images):
        figures = image_figures(output_dir, index, image)
        boxes_files = _files(output_dir / DETECTIONS_DIR, index)
        grid = detection_grid(figures, index, image, list(manifest.methods or [])) if boxes_files else None
        rows.append({"name": image.get("name", ""), "cells": [cell(image) for _, cell in columns],
                     "figures": boxes_files if grid else figures, "grid": grid})
    boxes = any(_files(output_dir / DETECTIONS_DIR, i) for i in range(len(images)))
    methods = ", ".join(manifest.methods or [])
    figures = (f"detections and ground truth (dashed), then each detection's map: a row per method ({methods})"
               if boxes else f"overlays ({methods})")
    metrics = read_csv_table(output_dir / EXPLAIN_METRICS_FILE)
    features = [output_dir / f for f in extra.get("features") or [] if (output_dir / f).is_file()]
    grid = output_dir / GRID_FILE
    return page(f"explain report: {output_dir.name}", str(output_dir.resolve()), [
        Section("provenance", "Checkpoint and provenance",
                render("explain/provenance.html", rows=provenance, runtime=runtime)),
        Section("grid", "Comparison grid", render("explain/grid.html", grid=grid if grid.is_file() else None)),
        Section("overlays", "Overlays per image", render(
            "explain/overlays.html", header=["image", *(h for h, _ in columns), figures], rows=rows)),
        Section("metrics", "Explanation metrics", render(
            "explain/metrics.html", table=metrics, matrix=metric_matrix(metrics),
            recommendations=extra.get("recommendations") or [], present=(output_dir / EXPLAIN_METRICS_FILE).is_file())),
        Section("features", "Feature maps", render("explain/features.html", features=features)),
    ])
