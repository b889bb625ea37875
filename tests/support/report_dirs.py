"""Small report directories written by hand, for the report tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def explain_metrics_dir(tmp_path: Path) -> Path:
    """An explain directory with only a metrics.csv (2 methods, 2 baselines) and a manifest with one recommendation."""
    import csv

    header = ["method", "metric", "direction", "mean", "ci_low", "ci_high", "n", "excluded", "baseline"]
    rows = [["gradcam", "deletion", "lower", 0.123456, 0.1, 0.15, 8, 0, False],
            ["gradcam", "insertion", "higher", 0.61, 0.5, 0.7, 8, 0, False],
            ["saliency", "deletion", "lower", 0.2, 0.18, 0.22, 8, 0, False],
            ["saliency", "insertion", "higher", 0.4, 0.3, 0.5, 8, 0, False],
            ["random", "deletion", "lower", 0.3, 0.25, 0.35, 8, 0, True],
            ["random", "insertion", "higher", 0.3, 0.25, 0.35, 8, 0, True],
            ["centre_gaussian", "deletion", "lower", 0.13, 0.11, 0.16, 8, 0, True],
            ["centre_gaussian", "insertion", "higher", 0.65, 0.55, 0.75, 8, 0, True]]
    with open(tmp_path / "metrics.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    recommendations = ["deletion ↓: gradcam is best (0.123 [0.100, 0.150]), clearly better than the random map (0.300; "
                       "paired difference -0.177 [-0.2, -0.15]), not distinguishable from the centred Gaussian on 8 "
                       "images (0.130; paired difference -0.007 [-0.03, +0.02]); about 95 images needed"]
    (tmp_path / "manifest.json").write_text(json.dumps({"methods": ["gradcam", "saliency"], "images": [],
                                                        "recommendations": recommendations}))
    return tmp_path


def detection_explain_dir(tmp_path: Path, detections: int = 5, methods: tuple[str, ...] = ("gradcam", "integrated_gradients")) -> Path:
    """An explain directory of one detection image: its boxes and a 160 px map per method and detection."""
    from PIL import Image

    def png(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (160, 160), (90, 140, 200)).save(path)

    png(tmp_path / "detections" / "00_a.png")
    overlays = []
    for method in methods:
        for k in range(detections):
            overlays.append(f"overlays/00_a_{method.replace('++', 'pp')}_{k:02d}.png")
            png(tmp_path / overlays[-1])
    image = {"name": "a.png", "true_objects": detections, "overlays": overlays,
             "detections": [{"class": "triangle", "score": 0.9 - 0.1 * k} for k in range(detections)]}
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"methods": list(methods), "detection_threshold": 0.3, "images": [image]}))
    return tmp_path


# ----------------------------------------------------------------------------- the "What the model learned" section
STEPS = (4, 9, 14, 19)  # end of epochs 0..3 with 5 steps an epoch


def _metrics_csv(run: Path, energy: list[float], agreement: list[float], alarm: list[int], acc: list[float]) -> None:
    """A Lightning-like metrics.csv: epoch rows at step 5e+4, the callback's scalars at step 5e+5 (its own rows)."""
    header = ["epoch", "step", "train/acc_epoch", "val/acc", "interpretation/gradcam/energy_in_mask",
              "interpretation/gradcam/location_agreement", "interpretation/gradcam/drift",
              "interpretation/gradcam/shortcut_alarm"]
    rows = []
    for e, step in enumerate(STEPS):
        rows.append([e, step, acc[e], acc[e] - 0.05, "", "", "", ""])
        rows.append(["", step + 1, "", "", energy[e], agreement[e], 0.5 / (e + 1), alarm[e]])
    (run / "csv").mkdir(parents=True, exist_ok=True)
    with open(run / "csv" / "metrics.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def _cartography_csv(run: Path, n: int = 40, flipped: tuple[int, ...] = (3, 7, 11, 20)) -> None:
    """``n`` samples; the flipped ones and sample 30 least confident (30 outranks 20: precision 3/4)."""
    with open(run / "cartography.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "label", "confidence", "variability", "correctness", "epochs", "noisy"])
        for i in range(n):
            confidence = 0.05 + 0.01 * i if i in flipped[:3] else 0.09 if i == 30 else 0.2 if i == 20 else 0.6 + 0.009 * i
            writer.writerow([i, i % 3, f"{confidence:.6f}", f"{0.1 + 0.002 * i:.6f}",
                             f"{0.0 if confidence < 0.3 else 1.0:.6f}", 4, int(i in flipped)])


def learned_run_dir(tmp_path: Path, *, alarm: bool, cartography: bool = True, image: bool = True,
                    name: str | None = None) -> Path:
    """A run directory (``name``, else ``shortcut`` or ``clean``, under ``tmp_path``) with explanation metrics over 4 epochs (the
    shortcut alarm firing at epoch 2 when ``alarm``), a cartography.csv with 4 flipped labels, the hardest-samples image."""
    run = tmp_path / (name or ("shortcut" if alarm else "clean"))
    if alarm:
        _metrics_csv(run, [0.4, 0.2, 0.03, 0.02], [0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1], [0.5, 0.7, 0.9, 0.95])
    else:
        _metrics_csv(run, [0.4, 0.5, 0.6, 0.62], [0.1, 0.12, 0.1, 0.1], [0, 0, 0, 0], [0.5, 0.7, 0.9, 0.95])
    if cartography:
        _cartography_csv(run)
    if image:
        from PIL import Image

        folder = run / "images" / "cartography" / "hardest"
        folder.mkdir(parents=True)
        Image.new("RGB", (600, 300), (200, 30, 30)).save(folder / "step_000020.png")
    return run
