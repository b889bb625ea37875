"""The explain directory's file names come from runner.artifacts and stay as they were."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from runner.explain.writer import (
    detection_file,
    feature_file,
    map_key,
    overlay_file,
    save_maps,
    write_manifest,
    write_metric_rows,
)


def test_per_image_file_names(tmp_path: Path) -> None:
    assert overlay_file(tmp_path, 0, "sample_00", "gradcam++") == tmp_path / "overlays" / "00_sample_00_gradcampp.png"
    assert overlay_file(tmp_path, 2, "/x/a+b c.png", "integrated_gradients").name == "02_a_b_c_integrated_gradients.png"
    assert overlay_file(tmp_path, 1, "sample_01", "gradcam++", 3).name == "01_sample_01_gradcampp_03.png"
    assert detection_file(tmp_path, 12, "dog.jpg") == tmp_path / "detections" / "12_dog.png"
    assert feature_file(tmp_path, 0, "sample_00", "backbone.layer2") == tmp_path / "features" / "00_sample_00_backbone.layer2.png"
    assert map_key("gradcam++") == "map_gradcampp" and map_key("gradcam", 4) == "map_gradcam_04"


def test_maps_metrics_and_manifest(tmp_path: Path) -> None:
    save_maps(tmp_path, {"map_gradcam": np.zeros((1, 4, 4)), "methods": np.array(["gradcam"])})
    with np.load(tmp_path / "maps.npz") as maps:
        assert maps.files == ["map_gradcam", "methods"]
    assert write_metric_rows(tmp_path, [{"method": "gradcam", "mean": 0.5}]) == "metrics.csv"
    assert list(csv.DictReader((tmp_path / "metrics.csv").open())) == [{"method": "gradcam", "mean": "0.5"}]
    (tmp_path / "explain.log").write_text("log")
    manifest = write_manifest(tmp_path, {"checkpoint": {"path": "x"}, "methods": ["gradcam"], "runtime_s": {"gradcam": 1.0},
                                         "images": []})
    assert list(manifest)[-1] == "files" and "explain.log" not in manifest["files"]
    assert {"maps.npz", "metrics.csv"} <= set(manifest["files"])
    assert (tmp_path / "manifest.json").is_file()
