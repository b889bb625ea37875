"""The report of a multirun: the jobs (failed ones marked), each swept value against ``optimized_metric``,
the final explanation metrics of every job (which one looks at the right thing), the validation curves
of every job, and every job's final metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from markupsafe import Markup

from runner.artifacts import REPORT_FILE, csv_metrics_files
from runner.report.charts import spans_decades, svg_chart
from runner.report.html import Section, page, render
from runner.report.learned import ALARM_METRIC, explanation_curves, first_alarms
from runner.report.readers import Series, SweepJob, read_metrics_csv, read_sweep
from runner.report.values import fmt

__all__ = ["build_sweep_report"]

SHOWN_PREFIXES = ("test/", "val/")  # the final metrics that get a column in the jobs table
BEST_SUFFIX = "_best"  # a running best of another column: not drawn again as a curve
LOG_X_RATIO = 50  # a numeric sweep spanning this factor or more is drawn against log10


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _swept(jobs: list[SweepJob]) -> list[str]:
    """The overrides (``+``/``~`` stripped) that differ between jobs or that some job lacks."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for key, value in job.params.items():
            values.setdefault(key.lstrip("+~"), []).append(value)
    return [k for k, v in values.items() if len(set(v)) > 1 or len(v) < len(jobs)]


def _scatter(jobs: list[SweepJob], param: str, metric_name: str) -> Markup:
    """``metric_name`` against one swept value: ok jobs as points, the others as crosses at the lowest value."""
    values = [(job, job.param(param)) for job in jobs]
    numeric = all(v != "" and _number(v) is not None for _, v in values)
    categories = None if numeric else sorted({v for _, v in values})
    finite = [j.value for j in jobs if math.isfinite(j.value)]
    floor = min(finite) if finite else 0.0
    good, bad = [], []
    for job, v in values:
        x = float(v) if numeric else float(categories.index(v))  # type: ignore[union-attr]
        tip = f"job {job.num}: {param}={v}, {metric_name}={fmt(job.value)}"
        if job.ok and math.isfinite(job.value):
            good.append((x, job.value, tip))
        else:
            bad.append((x, floor, f"{tip} ({job.status})"))
    xs = [x for x, _, _ in good + bad]
    log_x = numeric and spans_decades(xs, LOG_X_RATIO)  # e.g. the learning rate: a log axis, labelled with values
    marks = {"jobs": good}
    if bad:
        marks["failed jobs (drawn at the lowest value)"] = bad
    return svg_chart({}, f"{metric_name} vs {param}", xlabel=param, marks=marks, xcategories=categories, log_x=log_x)


def _job_series(job: SweepJob) -> Series:
    files = csv_metrics_files(job.dir)
    return read_metrics_csv(files[0]) if files else {}


def _explanations(jobs: list[SweepJob], all_series: list[Series]) -> dict[str, Any]:
    """The last value of every ``interpretation/<method>/<metric>`` of each job, and when its shortcut alarm fired.

    Returns:
        ``{"columns": ["<method>/<metric>", ...], "rows": [{"job", "cells", "alarm"}], "alarms"}``; no columns when no
        job logged explanation metrics.
    """
    finals: list[dict[str, float]] = []
    alarms: list[str] = []
    for series in all_series:
        metrics, alarm_series = explanation_curves(series)
        finals.append({f"{method}/{metric}": max(pts)[1] for metric, by_method in metrics.items()
                       for method, pts in by_method.items() if pts})
        fired = first_alarms(series)
        alarms.append("; ".join(f"{a['method']}: alarm at " + (f"epoch {a['epoch']}" if a["epoch"] is not None
                                                              else f"step {a['step']}") for a in fired)
                      or ("silent" if alarm_series else ""))
    order = list(dict.fromkeys(k for f in finals for k in f))  # the metrics' order (explanation_curves')
    columns = sorted(order, key=lambda k: (k.split("/", 1)[0], order.index(k)))
    rows = [{"job": job, "cells": [f.get(c, "") for c in columns], "alarm": alarm}
            for job, f, alarm in zip(jobs, finals, alarms, strict=True)]
    return {"columns": columns, "rows": rows, "alarms": any(alarms), "alarm_name": ALARM_METRIC}


def _curves(jobs: list[SweepJob], all_series: list[Series]) -> list[Markup]:
    """One chart per ``val/*`` column (running bests left out) with a line per job."""
    curves: dict[str, Series] = {}
    for job, series in zip(jobs, all_series, strict=True):
        for key, pts in series.items():
            if key.startswith("val/") and not key.endswith(BEST_SUFFIX):
                curves.setdefault(key, {})[f"job {job.num}"] = pts
    return [svg_chart(v, f"{k} of every job") for k, v in sorted(curves.items())]


def _rows(sweep_dir: Path, jobs: list[SweepJob], swept: list[str], shown: list[str], best: SweepJob | None,
          common: list[str]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        name = job.dir.relative_to(sweep_dir).as_posix()
        rows.append({
            "job": job, "class": "failed" if not job.ok else ("best" if job is best else ""),
            "params": [job.param(p) for p in swept], "metrics": [job.metrics.get(m, "") for m in shown],
            "own": " ".join(o for o in job.overrides if o not in common and o.split("=", 1)[0].lstrip("+~") not in swept),
            "seconds": f"{float(job.seconds):.1f}" if job.seconds is not None else "",
            "name": name, "link": f"{name}/{REPORT_FILE}" if (job.dir / REPORT_FILE).is_file() else None,
        })
    return rows


def build_sweep_report(sweep_dir: Path) -> str:
    """The HTML of a multirun's report; reads the job directories, writes nothing.

    Raises:
        FileNotFoundError: the directory holds no job directory.
    """
    sweep_dir = Path(sweep_dir)
    metric_name, direction, jobs = read_sweep(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: a multirun directory without any job directory")
    swept = _swept(jobs)
    ok = [j for j in jobs if j.ok and math.isfinite(j.value)]
    best = (min if direction == "minimize" else max)(ok, key=lambda j: j.value) if ok else None
    shown = sorted({k for j in jobs for k in j.metrics if k.startswith(SHOWN_PREFIXES)} - {metric_name})
    common = [o for o in jobs[0].overrides if all(o in j.overrides for j in jobs)]
    table = render("sweep/jobs.html", jobs=jobs, failed=sum(1 for j in jobs if not j.ok), best=best,
                   metric_name=metric_name, common=" ".join(common), swept=swept, shown=shown,
                   rows=_rows(sweep_dir, jobs, swept, shown, best, common))
    all_series = [_job_series(job) for job in jobs]
    return page(f"sweep report: {sweep_dir.name}", str(sweep_dir.resolve()), [
        Section("jobs", "Jobs", table),
        Section("hparams", f"Hyperparameters against {metric_name}",
                render("sweep/hparams.html", charts=[_scatter(jobs, p, metric_name) for p in swept])),
        Section("explanations", "What each job's model looks at",
                render("sweep/explanations.html", swept=swept, **_explanations(jobs, all_series))),
        Section("curves", "Validation curves of every job",
                render("sweep/curves.html", charts=_curves(jobs, all_series))),
        Section("details", "Final metrics per job", render("sweep/details.html", jobs=[
            (job, [(k, float(v)) for k, v in sorted(job.metrics.items())]) for job in jobs])),
    ])
