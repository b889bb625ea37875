"""The ``explain.py`` report's per-image rows follow the manifest and the files, whatever the task."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.report import write_report
from tests.support.report_dirs import explain_metrics_dir


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
    # the boxes, then the per-detection maps as a grid: a row per method, a column per detection
    assert _alts(page) == ["00_a", "00_a_gradcam_00", "00_a_gradcam_01"]
    assert "detections (score &gt;= 0.5000)" in page and "dog 0.90" in page and "true objects" in page
    assert "<th>detection 0: dog 0.90</th><th>detection 1</th>" in page and '<th scope="row">gradcam</th>' in page
    assert "then each detection&#39;s map: a row per method (gradcam)" in page and "<th>predicted</th>" not in page


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


def test_metrics_are_a_wide_table_with_best_marked_and_baselines_apart(tmp_path: Path) -> None:
    from runner.report.explain_page import metric_matrix, sig3

    assert (sig3(0.123456), sig3(0.2), sig3(12.345), sig3(100.0), sig3(1.234e-5), sig3(float("nan"))) == (
        "0.123", "0.200", "12.3", "100", "1.23e-05", "")
    page = write_report(explain_metrics_dir(tmp_path)).read_text()
    assert "<th colspan=\"2\" title=\"lower is better\">deletion ↓</th>" in page
    body = page[page.index('class="metrics"'):]
    methods = re.findall(r'<th scope="row">([a-z_]+)', body)
    assert methods == ["gradcam", "saliency", "random", "centre_gaussian"]  # methods, then the baselines
    assert body.count("★") == 2 and '<td class="num best">★ 0.123</td><td class="num ci">[0.100, 0.150]</td>' in body
    assert '<td class="num best">★ 0.650</td>' in body  # the centred Gaussian beats every method on insertion
    assert body.count("first-baseline") == 1 and "about 95 images needed" in body

