"""The files of an ``explain.py`` directory: overlays, grid, ``maps.npz``, ``metrics.csv``, manifest.

Every name comes from :mod:`runner.artifacts` (``image_stem``, ``method_file_name``,
``safe_name`` and the ``*_FILE``/``*_DIR`` constants); the task modules decide what to draw,
this module where it goes and how it is written.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from runner.artifacts import (
    DETECTIONS_DIR,
    EXPLAIN_METRICS_FILE,
    FEATURES_DIR,
    GRID_FILE,
    MAPS_FILE,
    OVERLAYS_DIR,
    REPORT_FILE,
    Manifest,
    image_stem,
    method_file_name,
    safe_name,
    write_json,
)

log = logging.getLogger(__name__)

__all__ = [
    "PACKAGES",
    "detection_file",
    "feature_file",
    "map_key",
    "overlay_file",
    "save_grid",
    "save_image",
    "save_maps",
    "write_manifest",
    "write_metric_rows",
]

#: the libraries whose versions the manifest records
PACKAGES = ("torch", "timm", "lightning", "torchvision", "numpy", "vision-runner")


def overlay_file(output_dir: Path, index: int, name: str, method: str, detection: int | None = None) -> Path:
    """``overlays/NN_<image>_<method>.png``; a detection's: ``overlays/NN_<image>_<method>_KK.png``."""
    suffix = "" if detection is None else f"_{detection:02d}"
    return output_dir / OVERLAYS_DIR / f"{image_stem(index, name)}_{method_file_name(method)}{suffix}.png"


def detection_file(output_dir: Path, index: int, name: str) -> Path:
    """``detections/NN_<image>.png``: the image with its detections' boxes."""
    return output_dir / DETECTIONS_DIR / f"{image_stem(index, name)}.png"


def feature_file(output_dir: Path, index: int, name: str, layer: str) -> Path:
    """``features/NN_<image>_<layer>.png``: a layer's feature maps of one image."""
    return output_dir / FEATURES_DIR / f"{image_stem(index, name)}_{safe_name(layer)}.png"


def map_key(method: str, index: int | None = None) -> str:
    """A method's array in ``maps.npz``: ``map_<method>``; one image's (detection): ``map_<method>_NN``."""
    return f"map_{method_file_name(method)}" + ("" if index is None else f"_{index:02d}")


def save_image(path: Path, pixels: np.ndarray) -> Path:
    """Write a ``uint8`` ``(H, W, 3)`` array as PNG, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def save_grid(output_dir: Path, grid: np.ndarray) -> Path:
    """``grid.png``: the comparison grid."""
    return save_image(output_dir / GRID_FILE, grid)


def save_maps(output_dir: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """``maps.npz``: the raw maps and what they explain, compressed."""
    np.savez_compressed(output_dir / MAPS_FILE, **arrays)
    return output_dir / MAPS_FILE


def write_metric_rows(output_dir: Path, rows: Sequence[Mapping[str, Any]]) -> str:
    """``metrics.csv`` from rows of equal keys (the first row's keys are the header); returns its name."""
    with open(output_dir / EXPLAIN_METRICS_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return EXPLAIN_METRICS_FILE


def _files(output_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*") if p.is_file() and p.suffix != ".log")


def write_manifest(output_dir: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` (``body`` plus ``files``: every file written), then ``report.html``.

    The report reads the manifest; when it is written, the manifest's ``files`` list it too. A
    report that fails only warns.

    Returns:
        the manifest as written.
    """
    from runner.report import write_report_safely

    manifest = {**body, "files": _files(output_dir)}
    path = Manifest.path(output_dir)
    write_json(path, manifest)
    if write_report_safely(output_dir) is not None:
        manifest["files"] = sorted([*manifest["files"], REPORT_FILE])
        write_json(path, manifest)
    return manifest
