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
    EXPLAIN_METRICS_FILE,
    GRID_FILE,
    OVERLAYS_DIR,
    Manifest,
)
from runner.report.html import Section, page, render
from runner.report.readers import read_csv_table
from runner.report.values import fmt

__all__ = ["build_explain_report", "image_figures"]


def _files(folder: Path, index: int) -> list[Path]:
    """The files of ``folder`` belonging to image ``index`` (``NN_*``), by name."""
    return sorted(folder.glob(f"{index:02d}_*.png")) if folder.is_dir() else []


def image_figures(output_dir: Path, index: int, image: dict[str, Any]) -> list[Path]:
    """Image ``index``'s figures: its ``detections/`` files, then its overlays (as listed, else as found)."""
    listed = image.get("overlays")
    overlays = ([output_dir / p for p in listed if (output_dir / p).is_file()] if listed is not None
                else _files(output_dir / OVERLAYS_DIR, index))
    return _files(output_dir / DETECTIONS_DIR, index) + overlays


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
    rows = [{"name": image.get("name", ""), "cells": [cell(image) for _, cell in columns],
             "figures": image_figures(output_dir, index, image)} for index, image in enumerate(images)]
    boxes = any(_files(output_dir / DETECTIONS_DIR, i) for i in range(len(images)))
    methods = ", ".join(manifest.methods or [])
    figures = f"boxes, then each detection's map ({methods})" if boxes else f"overlays ({methods})"
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
            "explain/metrics.html", table=metrics, present=(output_dir / EXPLAIN_METRICS_FILE).is_file())),
        Section("features", "Feature maps", render("explain/features.html", features=features)),
    ])
