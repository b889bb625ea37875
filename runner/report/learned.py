"""The run report's "What the model learned" section: explanation-quality curves beside accuracy, the
shortcut alarm, and dataset cartography (the confidence/variability map and the hardest samples).

What it reads, all written during training:

- ``interpretation/<method>/<metric>`` and ``interpretation/<method>/shortcut_alarm`` scalars
  (``callbacks.InterpretationCallback`` with its ``metrics``), from the run's scalars;
- :data:`runner.artifacts.CARTOGRAPHY_FILE` (``callbacks.CartographyCallback``): one row per training
  sample, ``noisy`` when the datamodule flipped labels on purpose;
- the image ``callbacks.names.HARDEST_KEY`` (the hardest samples with their heatmaps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from runner.report.charts import svg_chart
from runner.report.html import render
from callbacks.names import HARDEST_KEY
from runner.report.readers import Series, epoch_of_step, read_cartography
from runner.report.values import thin

__all__ = [
    "ALARM_METRIC",
    "INTERPRETATION_PREFIX",
    "explanation_curves",
    "first_alarms",
    "hardest_samples",
    "learned_section",
    "precision_at_k",
]

#: the scalars' first path part (``InterpretationCallback(prefix=...)``'s default)
INTERPRETATION_PREFIX = "interpretation"
ALARM_METRIC = "shortcut_alarm"
#: the metrics in the order their charts appear (others after them, by name), with how to read them
METRICS = {
    "energy_in_mask": "share of the map on the object: higher is better",
    "location_agreement": "how alike the maps of different images are: high = one spot whatever the image (shortcut)",
    "pointing_game": "the map's peak on the object: higher is better",
    "deletion_auc": "faithfulness, deleting the top pixels first: lower is better",
    "insertion_auc": "faithfulness, inserting the top pixels first: higher is better",
    "drift": "1 - rank correlation with the previous maps: settles as training converges",
    "concentration": "normalised entropy of the map: low = focused",
}
#: the evidence of the shortcut alarm, shown where it first fired
EVIDENCE = ("energy_in_mask", "location_agreement")
ACCURACY_KEYS = ("train/acc_epoch", "train/acc", "train/acc_step")
SMALL = {"width": 340, "height": 210}
#: correctness bins of the scatter: (lowest value, name, colour), red (never right) to green (always right)
CORRECTNESS_BINS = ((0.0, "correct < 20% of epochs", "#d62728"), (0.2, "correct 20-40%", "#ff7f0e"),
                    (0.4, "correct 40-60%", "#bcbd22"), (0.6, "correct 60-80%", "#7fbf3f"),
                    (0.8, "correct >= 80%", "#2ca02c"))
FLIPPED = "label flipped on purpose"
MAX_SCATTER = 1500  # points in the scatter (the hardest always kept, a third at most flipped ones, the rest thinned evenly)
HARDEST_ROWS = 12


def explanation_curves(series: Series) -> tuple[dict[str, Series], Series]:
    """``interpretation/<method>/<metric>`` columns as metric -> method -> points, and the alarms as method -> points."""
    metrics: dict[str, Series] = {}
    alarms: Series = {}
    for key, pts in series.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != INTERPRETATION_PREFIX:
            continue
        _, method, metric = parts
        if metric == ALARM_METRIC:
            alarms[method] = pts
        else:
            metrics.setdefault(metric, {})[method] = pts
    order = [m for m in METRICS if m in metrics] + sorted(set(metrics) - set(METRICS))
    return {m: metrics[m] for m in order}, alarms


def _value_at(points: list[tuple[float, float]], step: float) -> float | None:
    """The value logged at ``step``, else the last one before it; None when there is none."""
    before = [(s, v) for s, v in points if s <= step]
    return max(before)[1] if before else None


def first_alarms(series: Series) -> list[dict[str, Any]]:
    """Per method whose ``shortcut_alarm`` was ever 1: the first step, its epoch and the evidence then."""
    metrics, alarms = explanation_curves(series)
    accuracy = next((series[k] for k in ACCURACY_KEYS if k in series), [])
    fired = []
    for method, pts in sorted(alarms.items()):
        step = next((s for s, v in sorted(pts) if v >= 0.5), None)
        if step is None:
            continue
        evidence = {m: _value_at(metrics.get(m, {}).get(method, []), step) for m in EVIDENCE}
        fired.append({"method": method, "step": int(step), "epoch": epoch_of_step(series, int(step)),
                      "evidence": {k: v for k, v in evidence.items() if v is not None},
                      "accuracy": _value_at(accuracy, step)})
    return fired


def precision_at_k(rows: list[dict[str, float]]) -> tuple[float, int] | None:
    """The share of the ``k`` least confident samples that were flipped on purpose (``k`` = flipped), and ``k``.

    Ties go to the lower index, as :func:`interpret.cartography.precision_at_k`. None without a ``noisy`` column
    or without a flipped sample.
    """
    flipped = {int(r["index"]) for r in rows if r.get("noisy", 0) >= 0.5}
    if not flipped:
        return None
    k = len(flipped)
    lowest = sorted(rows, key=lambda r: (r["confidence"], r["index"]))[:k]
    return sum(int(r["index"]) in flipped for r in lowest) / k, k


def hardest_samples(rows: list[dict[str, float]], n: int = HARDEST_ROWS) -> list[dict[str, float]]:
    """The ``n`` least confident samples, the lowest first (ties: the lower index)."""
    return sorted(rows, key=lambda r: (r["confidence"], r["index"]))[:n]


def _tip(r: dict[str, float]) -> str:
    tip = (f"sample {int(r['index'])}: label {int(r.get('label', -1))}, confidence {r['confidence']:.3f}, "
           f"variability {r['variability']:.3f}, correctness {r['correctness']:.2f}")
    return tip + (", label flipped on purpose" if r.get("noisy", 0) >= 0.5 else "")


def _scatter(rows: list[dict[str, float]]) -> tuple[Markup, int]:
    """Confidence against variability, coloured by correctness, flipped samples ringed; and how many are drawn."""
    hardest = {int(r["index"]) for r in hardest_samples(rows, HARDEST_ROWS)}
    flipped_rows = thin([r for r in rows if r.get("noisy", 0) >= 0.5 and int(r["index"]) not in hardest], MAX_SCATTER // 3)
    keep = hardest | {int(r["index"]) for r in flipped_rows}
    rest = [r for r in rows if int(r["index"]) not in keep]
    shown = [r for r in rows if int(r["index"]) in keep] + thin(rest, max(2, MAX_SCATTER - len(keep)))
    marks: dict[str, list[tuple[float, float, str]]] = {}
    for _, name, _ in CORRECTNESS_BINS:
        marks[name] = []
    for r in shown:
        name = next(n for low, n, _ in reversed(CORRECTNESS_BINS) if r["correctness"] >= low - 1e-9)
        marks[name].append((r["variability"], r["confidence"], _tip(r)))
    flipped = [(r["variability"], r["confidence"], _tip(r)) for r in shown if r.get("noisy", 0) >= 0.5]
    if flipped:
        marks[FLIPPED] = flipped
    marks = {k: v for k, v in marks.items() if v}
    colours = {name: colour for _, name, colour in CORRECTNESS_BINS} | {FLIPPED: "#111111"}
    radius = 2.5 if len(shown) > 300 else 3.5
    chart = svg_chart({}, "data map: confidence vs variability", xlabel="variability (std of the label's probability)",
                      width=520, height=380, marks=marks, mark_colors=colours, mark_radius=radius,
                      ring_marks=(FLIPPED,))
    return chart, len(shown)


def learned_section(series: Series, accuracy: Series, run_dir: Path,
                    images: dict[str, list[tuple[int, Path]]]) -> Markup:
    """The section's body: explanation curves beside accuracy, alarms, the data map and the hardest samples.

    Args:
        series: the run's scalars.
        accuracy: the accuracy curves (train and validation) the "Metric curves" section draws, to show beside.
        run_dir: the run directory (its cartography csv).
        images: the run's logged images (key -> [(step, path)]).
    """
    metrics, alarms = explanation_curves(series)
    fired = first_alarms(series)
    charts: list[Markup] = []
    notes = []
    if metrics and accuracy:
        charts.append(svg_chart(accuracy, "accuracy", **SMALL))
    for metric, by_method in metrics.items():
        marks, colours = None, None
        alarm_points = [(float(a["step"]), a["evidence"][metric], f"shortcut alarm ({a['method']}) at step {a['step']}")
                        for a in fired if metric in a["evidence"]]
        if alarm_points:
            marks, colours = {"shortcut alarm fired": alarm_points}, {"shortcut alarm fired": "#d62728"}
        charts.append(svg_chart(by_method, metric, marks=marks, mark_colors=colours, **SMALL))
        notes.append((metric, METRICS.get(metric, "")))
    rows = read_cartography(run_dir)
    scatter, drawn = _scatter(rows) if rows else (Markup(""), 0)
    score = precision_at_k(rows) if rows else None
    hardest = [{"index": int(r["index"]), "label": int(r["label"]) if "label" in r else "",
                "confidence": r["confidence"], "variability": r["variability"], "correctness": r["correctness"],
                "flipped": "yes" if r.get("noisy", 0) >= 0.5 else ""} for r in hardest_samples(rows)]
    frames = images.get(HARDEST_KEY) or []
    return render(
        "run/learned.html", charts=charts, notes=notes, fired=fired, alarms=bool(alarms),
        methods=sorted({m for by_method in metrics.values() for m in by_method}),
        rows=len(rows), scatter=scatter, drawn=drawn, score=score, hardest=hardest,
        noisy=any("noisy" in r for r in rows), hardest_image=frames[-1][1] if frames else None,
        hardest_step=frames[-1][0] if frames else None,
    )
