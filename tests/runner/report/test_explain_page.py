"""The ``explain.py`` report's per-image rows follow the manifest and the files, whatever the task."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.report import write_report


def _png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def _alts(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)


def test_rows_show_what_the_images_carry_and_their_figures(tmp_path: Path) -> None:
    _png(tmp_path / "detections" / "00_a.png")
    for name in ("00_a_gradcam_00.png", "00_a_gradcam_01.png"):
        _png(tmp_path / "overlays" / name)
    image = {"name": "a.png", "true_objects": 2, "overlays": ["overlays/00_a_gradcam_01.png", "overlays/00_a_gradcam_00.png"],
             "detections": [{"class": "dog", "score": 0.9}]}
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"methods": ["gradcam"], "detection_threshold": 0.5, "images": [image]}))
    page = write_report(tmp_path).read_text()
    assert _alts(page) == ["00_a", "00_a_gradcam_01", "00_a_gradcam_00"]  # boxes, then the listed overlays in order
    assert "detections (score &gt;= 0.5000)" in page and "dog 0.90" in page and "true objects" in page
    assert "boxes, then each detection&#39;s map (gradcam)" in page and "<th>predicted</th>" not in page


def test_overlays_not_listed_are_found_by_their_image_prefix(tmp_path: Path) -> None:
    for name in ("00_a_gradcam.png", "01_b_gradcam.png"):
        _png(tmp_path / "overlays" / name)
    images = [{"name": "a.png", "label": 0, "predicted": 1, "probability": 0.75},
              {"name": "b.png", "label": 1, "predicted": 1, "probability": 0.5}]
    (tmp_path / "manifest.json").write_text(json.dumps({"methods": ["gradcam"], "class_names": ["cat", "dog"],
                                                        "images": images}))
    page = write_report(tmp_path).read_text()
    assert _alts(page) == ["00_a_gradcam", "01_b_gradcam"]
    assert "<td>cat</td><td>dog</td>" in page and "overlays (gradcam)" in page and "detections" not in page
