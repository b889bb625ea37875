"""The report of one training run: config and provenance, final metrics, curves, images over training.

Sections follow what was logged, not which model ran: every ``train/*`` and ``val/*`` metric gets a
curve (a chart per metric name, train and validation together), every ``images/<key>/`` a slider,
anything else logged more than once a chart under "Other scalars".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from markupsafe import Markup

from callbacks.names import FEATURES_PREFIX, GRAM_PREFIX, HARDEST_KEY
from runner.artifacts import IMAGES_DIR, JobResult
from runner.report.charts import is_constant, spans_decades, svg_chart
from runner.report.html import Section, page, render
from runner.report.learned import INTERPRETATION_PREFIX, learned_section
from runner.report.provenance import shown_provenance
from runner.report.readers import (
    Series,
    epoch_of_step,
    image_series,
    load_config,
    read_overrides,
    read_result,
    read_scalars,
    read_status,
)
from runner.report.values import fmt, thin

__all__ = ["MAX_FRAMES", "build_run_report", "curve_groups"]

MAX_FRAMES = 60  # images per slider (more are thinned evenly): keeps the file a few MB at most
STAGES = ("train", "val")  # metric prefixes drawn as curves; test/* is logged once, at the end
SUFFIXES = ("_step", "_epoch", "_best")  # one chart for loss, loss_step, loss_epoch, ...
TITLES = {"acc": "accuracy", "map": "detection mAP", "map_50": "detection mAP@0.5"}  # chart titles of known metric names
LR_KEYS = ("lr", "learning_rate")
FEATURE_STATS = ("mean", "std", "sparsity", "max")


def _metric_name(tail: str) -> str:
    for suffix in SUFFIXES:
        if tail.endswith(suffix) and len(tail) > len(suffix):
            return tail[: -len(suffix)]
    return tail


def _is_lr(key: str) -> bool:
    return key.startswith("lr-") or key in LR_KEYS


def curve_groups(series: Series) -> dict[str, Series]:
    """``train/*`` and ``val/*`` columns grouped by metric name: ``loss`` holds ``train/loss_step``, ``val/loss``...

    ``<m>`` is left out when ``<m>_step`` and ``<m>_epoch`` are both there (it repeats them); ``loss``
    comes first, the others by name.
    """
    groups: dict[str, Series] = {}
    for key, pts in series.items():
        head, _, tail = key.partition("/")
        if head not in STAGES or not tail or (f"{key}_step" in series and f"{key}_epoch" in series):
            continue
        groups.setdefault(_metric_name(tail), {})[key] = pts
    return {name: {k: groups[name][k] for k in sorted(groups[name], key=_line_order)}
            for name in sorted(groups, key=lambda g: (g != "loss", g))}


def _line_order(key: str) -> tuple[int, int, str]:
    """Train before validation; ``_step``, ``_epoch``, the plain name, ``_best``."""
    head, _, tail = key.partition("/")
    rank = next((i for i, s in enumerate(("_step", "_epoch")) if tail.endswith(s)), 3 if tail.endswith("_best") else 2)
    return STAGES.index(head), rank, key


def _curves(series: Series, source: str) -> Markup:
    lr = {k: v for k, v in series.items() if _is_lr(k)}
    charts = [svg_chart(v, TITLES.get(name, name)) for name, v in curve_groups(series).items()]
    if lr:
        values = [y for v in lr.values() for _, y in v]
        positive = all(y > 0 for y in values)
        charts.append(svg_chart(lr, "learning rate", log_y=positive and spans_decades(values)))
    return render("run/curves.html", series=bool(series), source=source, charts=charts, lr=bool(lr))


def _sliders(images: dict[str, list[tuple[int, Path]]], series: Series, keys: list[str]) -> list[dict[str, Any]]:
    sliders = []
    for key in keys:
        kept = thin(images[key], MAX_FRAMES)
        frames = []
        for step, path in kept:
            epoch = epoch_of_step(series, step)
            frames.append({"label": f"epoch {epoch} · step {step}" if epoch is not None else f"step {step}", "path": path})
        sliders.append({"key": key, "frames": frames, "shown": len(kept), "logged": len(images[key]),
                        "folder": f"{IMAGES_DIR}/{key}/"})
    return sliders


def _features(series: Series) -> Markup:
    by_stat: dict[str, Series] = {}
    for key, pts in series.items():
        parts = key.split("/")
        if parts[0] == FEATURES_PREFIX and len(parts) >= 3:
            by_stat.setdefault(parts[-1], {})["/".join(parts[1:-1])] = pts
    order = [s for s in FEATURE_STATS if s in by_stat] + sorted(set(by_stat) - set(FEATURE_STATS))
    return render("run/features.html", charts=[svg_chart(by_stat[s], f"features: {s}") for s in order])


def _gram(series: Series, images: dict[str, list[tuple[int, Path]]]) -> Markup:
    scalars = {k.split("/", 1)[1]: v for k, v in series.items() if k.startswith(GRAM_PREFIX + "/")}
    ranks = {k: v for k, v in scalars.items() if "rank" in k}
    offdiag = {k: v for k, v in scalars.items() if "offdiag" in k}
    rest = {k: v for k, v in scalars.items() if k not in ranks and k not in offdiag and not is_constant(v)}
    charts = [svg_chart(ranks, "Gram: effective rank"), svg_chart(offdiag, "Gram: mean off-diagonal"),
              svg_chart(rest, "Gram: other")] if scalars else []
    sliders = _sliders(images, series, [GRAM_PREFIX]) if GRAM_PREFIX in images else []
    return render("run/gram.html", scalars=bool(scalars), charts=charts, sliders=sliders)


def _other(series: Series) -> list[Markup]:
    """Charts of what no other section shows and was logged more than once, one per first path part."""
    groups: dict[str, Series] = {}
    for key, pts in series.items():
        head, _, tail = key.partition("/")
        if (key == "epoch" or _is_lr(key) or head in (FEATURES_PREFIX, GRAM_PREFIX, INTERPRETATION_PREFIX, "test")
                or (head in STAGES and tail) or len(pts) < 2):
            continue
        if is_constant(pts):  # e.g. num_samples: a chart of one value says nothing (the final table has it)
            continue
        groups.setdefault(head, {})[tail or head] = pts
    return [svg_chart(v, k) for k, v in sorted(groups.items())]


def _config_rows(run_dir: Path, result: JobResult | None, prov: dict[str, Any], cfg: Any) -> list[tuple[str, Any]]:
    overrides = read_overrides(run_dir, result)
    command = prov.get("command") or ("python run.py " + " ".join(overrides)).strip()
    commit = prov.get("git_commit") or "unknown (not a git checkout)"
    if prov.get("git_dirty"):
        commit += " (with uncommitted changes)"
    seed = cfg.get("seed") if cfg is not None else None
    rows: list[tuple[str, Any]] = [
        ("command", command + ("" if prov.get("command") else "   (reconstructed from .hydra/overrides.yaml)")),
        ("overrides", " ".join(overrides) or "(none)"),
        ("seed", fmt(seed) if seed is not None else "null (unseeded)"),
        ("git commit", commit),
    ]
    if result is not None:
        if result.started_at:
            rows.append(("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(result.started_at)))))
        if result.seconds is not None:
            rows.append(("duration", f"{float(result.seconds):.1f} s"))
        if result.job_num is not None:
            rows.append(("multirun job", result.job_num))
    versions = prov.get("versions") or {}
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "unknown"))
    rows.append(("recorded", f"{prov.get('recorded_at', '?')} on {prov.get('host', '?')} ({prov.get('platform', '?')})"))
    rows.append(("run directory", str(run_dir.resolve())))
    return rows


def _final(run_dir: Path, result: JobResult | None, series: Series) -> Markup:
    status = read_status(run_dir, result)  # the one status of the directory (status.json)
    failed = status.state == "failed"
    metrics = dict((result.metrics if result else None) or {}) if status.state in ("finished", "unknown") else {}
    if not metrics and series:  # no metrics.json (e.g. a run stopped by an error): the CSV's last values
        metrics = {k: v[-1][1] for k, v in series.items() if k != "epoch"}
    order = sorted(metrics, key=lambda k: (not k.startswith("test/"), not k.startswith("val/"), k))
    return render("run/final.html", failed=failed, state=status.state, reason=status.reason, step=status.step,
                  run_dir=str(run_dir.resolve()), attempts=len(status.attempts),
                  status=status.state if status.state != "unknown" else "unknown (no status.json or metrics.json)",
                  rows=[(k, float(metrics[k])) for k in order],
                  best_model_path=result.best_model_path if result else None)


def build_run_report(run_dir: Path, provenance: dict[str, Any] | None = None) -> str:
    """The HTML of one training run's report; reads the run, writes nothing.

    Args:
        run_dir: the run directory.
        provenance: what to show as the run's provenance (``write_report`` records it first); None: the
            recorded ``provenance.json``, else this process's.
    """
    run_dir = Path(run_dir)
    result = read_result(run_dir)
    prov = provenance if provenance is not None else shown_provenance(run_dir)
    series, source = read_scalars(run_dir)
    images = image_series(run_dir)
    config_text, cfg, note = load_config(run_dir)
    interp_keys = [k for k in images if k not in (GRAM_PREFIX, HARDEST_KEY)]
    sections = [
        Section("config", "Config and provenance", render(
            "run/config.html", rows=_config_rows(run_dir, result, prov, cfg), text=config_text, note=note)),
        Section("final", "Final metrics", _final(run_dir, result, series)),
        Section("curves", "Metric curves", _curves(series, source)),
        Section("learned", "What the model learned",
                learned_section(series, curve_groups(series).get("acc", {}), run_dir, images)),
        Section("interpretation", "Interpretation over training",
                render("run/interpretation.html", sliders=_sliders(images, series, interp_keys))),
        Section("features", "Feature statistics per layer", _features(series)),
        Section("gram", "Gram matrices", _gram(series, images)),
    ]
    other = [c for c in _other(series) if c]
    if other:
        sections.append(Section("other", "Other scalars", render("run/other.html", charts=other)))
    task, backbone = "run", None
    if cfg is not None:
        from omegaconf import OmegaConf

        task = str(cfg.get("task_name", "run"))
        backbone = OmegaConf.select(cfg, "model.backbone", default=None)
    title = f"{task} report: {run_dir.name}" + (f" ({backbone})" if backbone else "")
    return page(title, str(run_dir.resolve()), sections)
