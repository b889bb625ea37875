"""Score several explanation methods on the same images: a table with intervals and baselines.

:func:`evaluate_methods` explains a batch with each method, scores every map with the metrics of
this package, adds a random map and a centred Gaussian map as baselines, and summarises each
(method, metric) cell by its mean over the images and a bootstrap 95% interval of that mean
(images resampled with replacement). Each metric states its direction (↑ higher is better, ↓
lower is better) and gets a one-line recommendation that says whether the best method beats each
baseline (the random map and the centred Gaussian): the bootstrap 95% interval of the mean per-image
difference (paired: both maps scored on the same images) must exclude 0; when it does not, the line
says the two are not distinguishable on that many images and about how many would be needed.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from interpret.methods.base import Explainer
from interpret.metrics._inputs import as_batch, as_masks, as_targets, call_explainer, check_chunk, predicted_classes
from interpret.metrics.baselines import CentreGaussianMap, RandomMap
from interpret.metrics.deletion_insertion import deletion_insertion
from interpret.metrics.localisation import localisation
from interpret.metrics.randomisation import model_randomisation
from interpret.metrics.sensitivity import max_sensitivity

__all__ = [
    "BASELINE_METHODS",
    "DIRECTIONS",
    "MethodTable",
    "MetricSummary",
    "bootstrap_interval",
    "evaluate_methods",
    "images_needed",
]

log = logging.getLogger(__name__)

#: every metric and whether higher or lower is better
DIRECTIONS: dict[str, str] = {
    "deletion": "lower",
    "insertion": "higher",
    "max_sensitivity": "lower",
    "pointing_game": "higher",
    "energy_in_mask": "higher",
    "iou": "higher",
    "randomisation": "lower",
}
ARROWS = {"higher": "↑", "lower": "↓"}
LOCALISATION = ("pointing_game", "energy_in_mask", "iou")
#: the names the two baselines take in a table
BASELINE_METHODS: tuple[str, ...] = ("random", "centre_gaussian")


@dataclass(frozen=True)
class MetricSummary:
    """Mean of a metric over the scored images and a bootstrap 95% interval of the mean."""

    mean: float
    low: float
    high: float
    n: int
    excluded: int = 0

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_interval(
    values: torch.Tensor, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> MetricSummary:
    """Mean of ``values`` (NaN entries excluded and counted) with a percentile bootstrap interval."""
    values = values.detach().double().cpu().flatten()
    valid = values[~torch.isnan(values)]
    excluded = int(values.numel() - valid.numel())
    if valid.numel() == 0:
        nan = float("nan")
        return MetricSummary(nan, nan, nan, 0, excluded)
    mean = float(valid.mean())
    if valid.numel() == 1 or n_bootstrap < 1:
        return MetricSummary(mean, mean, mean, int(valid.numel()), excluded)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(valid.numel(), (n_bootstrap, valid.numel()), generator=generator)
    means = valid[index].mean(dim=1)
    tail = (1.0 - confidence) / 2.0
    if torch.isinf(means).any():
        sorted_means = means.sort().values
        low = float(sorted_means[int(math.floor(tail * (n_bootstrap - 1)))])
        high = float(sorted_means[int(math.ceil((1 - tail) * (n_bootstrap - 1)))])
    else:
        low, high = (float(q) for q in torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)))
    return MetricSummary(mean, low, high, int(valid.numel()), excluded)


@dataclass
class MethodTable:
    """Methods x metrics: summaries, per-image values, directions and recommendations.

    Attributes:
        methods: row labels (the methods, then the baselines).
        metrics: column names.
        summaries: ``{(method, metric): MetricSummary}``.
        values: ``{(method, metric): (B,) per-image values}`` (NaN = excluded).
        recommendations: ``{metric: one line}``.
        seconds: ``{method: seconds spent computing its maps}``.
        curves: ``{(method, "deletion" | "insertion"): (B, n_steps + 1)}`` and
            ``{(method, "randomisation"): (B, n_layers)}``.
    """

    methods: list[str]
    metrics: list[str]
    summaries: dict[tuple[str, str], MetricSummary] = field(default_factory=dict)
    values: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    recommendations: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    curves: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    def header(self, metric: str) -> str:
        """``"deletion ↓"``: the metric with its direction."""
        return f"{metric} {ARROWS[DIRECTIONS[metric]]}"

    def rows(self) -> list[dict[str, Any]]:
        """One dict per (method, metric): method, metric, direction, mean, ci_low, ci_high, n, excluded."""
        out = []
        for method in self.methods:
            for metric in self.metrics:
                s = self.summaries[(method, metric)]
                out.append(
                    {
                        "method": method,
                        "metric": metric,
                        "direction": DIRECTIONS[metric],
                        "mean": s.mean,
                        "ci_low": s.low,
                        "ci_high": s.high,
                        "n": s.n,
                        "excluded": s.excluded,
                        "baseline": method in BASELINE_METHODS,
                    }
                )
        return out

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`rows` as a CSV file."""
        rows = self.rows()
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def format(self) -> str:
        """A plain-text table (mean [95% interval]) followed by the recommendations."""
        headers = ["method"] + [self.header(m) for m in self.metrics]
        body = [[m] + [str(self.summaries[(m, k)]) for k in self.metrics] for m in self.methods]
        widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [headers, *body]]
        lines.insert(1, "  ".join("-" * width for width in widths))
        lines.append("")
        lines.extend(self.recommendations[m] for m in self.metrics)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


#: how a recommendation names each baseline
BASELINE_NAMES = {"random": "the random map", "centre_gaussian": "the centred Gaussian"}
#: the z value of a two-sided 95% interval
Z95 = 1.959964


def images_needed(differences: torch.Tensor, z: float = Z95) -> int | None:
    """About how many images a 95% interval of the mean of these paired differences needs to exclude 0.

    ``ceil((z * sd / |mean|)^2)`` for the per-image differences' mean and standard deviation (the
    normal approximation of the interval's half-width, ``z * sd / sqrt(n)``); None when the mean is
    0 or fewer than two differences are finite.
    """
    values = differences.detach().double().cpu().flatten()
    values = values[torch.isfinite(values)]
    if values.numel() < 2:
        return None
    mean, sd = float(values.mean()), float(values.std())
    if mean == 0.0:
        return None
    return max(int(values.numel()) + 1, math.ceil((z * sd / abs(mean)) ** 2))


def _versus(table: MethodTable, metric: str, best: str, baseline: str, noun: str) -> str:
    """Whether ``best`` beats ``baseline`` on ``metric``: paired over the same images, by the bootstrap
    interval of the mean per-image difference; when it does not, how many images would tell."""
    direction = DIRECTIONS[metric]
    difference = table.values[(best, metric)].double() - table.values[(baseline, metric)].double()
    paired = bootstrap_interval(difference, n_bootstrap=1000, seed=0)
    detail = (f"{table.summaries[(baseline, metric)].mean:.3f}; paired difference {paired.mean:+.3f} "
              f"[{paired.low:+.3f}, {paired.high:+.3f}]")
    if (paired.low > 0) if direction == "higher" else (paired.high < 0):
        return f"clearly better than {noun} ({detail})"
    if (paired.high < 0) if direction == "higher" else (paired.low > 0):
        return f"clearly worse than {noun} ({detail}): this metric favours {noun} here"
    needed = images_needed(difference)
    if needed is None or not _better(direction, paired.mean, 0.0):
        return f"no better than {noun} ({detail}): not distinguishable on {paired.n} images"
    return f"not distinguishable from {noun} on {paired.n} images ({detail}); about {needed} images needed"


def _better(direction: str, a: float, b: float) -> bool:
    return a > b if direction == "higher" else a < b


def _recommend(table: MethodTable, metric: str) -> str:
    direction = DIRECTIONS[metric]
    header = table.header(metric)
    candidates = [m for m in table.methods if m not in BASELINE_METHODS] or list(table.methods)
    scored = [m for m in candidates if not math.isnan(table.summaries[(m, metric)].mean)]
    if not scored:
        return f"{header}: no image could be scored"
    key = (lambda m: table.summaries[(m, metric)].mean) if direction == "higher" else (
        lambda m: -table.summaries[(m, metric)].mean
    )
    best = max(scored, key=key)
    s = table.summaries[(best, metric)]
    line = f"{header}: {best} is best ({s})"
    if metric == "randomisation":
        # a random map is trivially model-independent noise: compare with 0, not with it
        line += (
            f"; after every layer is re-initialised its maps keep a rank correlation of {s.mean:.2f} with the "
            "trained model's (near 0 is what an explanation of the model shows)"
        )
        return line + (": it barely depends on what the model learned" if s.low > 0.5 else "")
    verdicts = []
    for baseline, noun in BASELINE_NAMES.items():
        if (baseline, metric) in table.summaries and best != baseline:
            verdicts.append(_versus(table, metric, best, baseline, noun))
    if verdicts:
        line += ", " + "; ".join(verdicts)
    return line


def _label(method: str | Explainer, taken: set[str]) -> str:
    base = method.strip().lower() if isinstance(method, str) else getattr(method, "method_name", type(method).__name__)
    label, k = base, 2
    while label in taken:
        label, k = f"{base}_{k}", k + 1
    return label


def evaluate_methods(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    methods: Sequence[str | Explainer] | Mapping[str, str | Explainer],
    masks: Any = None,
    *,
    metrics: Sequence[str] | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    baselines: bool = True,
    n_steps: int | None = None,
    batch_size: int = 32,
    n_samples: int = 10,
    radius: float = 0.02,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    tolerance: float = 15.0,
    threshold: float = 0.5,
    randomisation_layers: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> MethodTable:
    """Explain ``images`` with each method and score the maps with every metric.

    Args:
        model: the classifier; left as it was found.
        images: ``(B, C, H, W)`` normalised model inputs.
        targets: ``(B,)`` classes to explain and score, or None for the predicted ones.
        methods: registry names (``"gradcam"``, ``"integrated_gradients"``, ...) or explainers of
            ``model``; a mapping gives each its label in the table.
        masks: ``(B, H, W)`` ground-truth object masks; adds pointing game, energy in mask and IoU.
        metrics: which of ``deletion, insertion, max_sensitivity, pointing_game, energy_in_mask,
            iou, randomisation``; default all but ``randomisation`` (the localisation ones only with masks).
        method_kwargs: ``{name: keywords}`` for methods given by name (e.g. ``{"gradcam": {"target_layer": "layer3"}}``).
        baselines: score :class:`RandomMap` (``"random"``) and :class:`CentreGaussianMap` (``"centre_gaussian"``) too.
        n_steps, batch_size: see :func:`~interpret.metrics.deletion_insertion`.
        n_samples, radius, mean, std: see :func:`~interpret.metrics.max_sensitivity`.
        tolerance, threshold: see :mod:`interpret.metrics.localisation`.
        randomisation_layers: layers of the randomisation check (default: every parametrised module).
        n_bootstrap: bootstrap resamples of the 95% intervals.
        seed: seed of the baselines, the noise and the bootstrap.

    Returns:
        a :class:`MethodTable`; ``print(table)`` shows it with the recommendations.
    """
    from interpret.methods.registry import get_explainer  # the registry imports every method

    check_chunk(batch_size)
    x = as_batch(model, images)
    b, _, h, w = x.shape
    truth = None if masks is None else as_masks(masks, b, (h, w))
    if metrics is None:
        metrics = ["deletion", "insertion", "max_sensitivity"] + (list(LOCALISATION) if truth is not None else [])
    metrics = list(metrics)
    for metric in metrics:
        if metric not in DIRECTIONS:
            raise ValueError(f"metrics can be {', '.join(DIRECTIONS)}; got {metric!r}")
        if metric in LOCALISATION and truth is None:
            raise ValueError(f"metric {metric!r} needs masks (ground-truth object masks, (B, H, W))")
    if isinstance(methods, str | Explainer):
        methods = [methods]
    items = list(methods.items()) if isinstance(methods, Mapping) else [(None, m) for m in methods]
    if not items and not baselines:
        raise ValueError("methods is empty; give registry names such as 'gradcam' or explainers")
    method_kwargs = dict(method_kwargs or {})
    explainers: dict[str, Explainer] = {}
    for label, method in items:
        label = label if label is not None else _label(method, set(explainers))
        if label in BASELINE_METHODS and baselines:
            raise ValueError(f"the label {label!r} is reserved for a baseline; name the method differently")
        if isinstance(method, str):
            explainers[label] = get_explainer(method, model, **dict(method_kwargs.get(method, {})))
        elif isinstance(method, Explainer):
            if method.model is not model:
                raise ValueError(f"the explainer {label!r} explains another model than the one given")
            explainers[label] = method
        else:
            raise ValueError(f"methods must be registry names or Explainer instances, got {type(method).__name__}")
    if baselines:
        explainers["random"] = RandomMap(model, seed=seed)
        explainers["centre_gaussian"] = CentreGaussianMap(model)
    target = as_targets(targets, b, x.device)
    if target is None:
        target = predicted_classes(model, x, batch_size)

    table = MethodTable(methods=list(explainers), metrics=metrics)
    for label, explainer in explainers.items():
        started = time.perf_counter()
        maps = call_explainer(explainer, x, target, batch_size)
        table.seconds[label] = time.perf_counter() - started
        values: dict[str, torch.Tensor] = {}
        if "deletion" in metrics or "insertion" in metrics:
            curves = deletion_insertion(model, x, maps, target, n_steps=n_steps, batch_size=batch_size)
            for name, result in curves.items():
                values[name] = result.auc
                table.curves[(label, name)] = result.curves
        if "max_sensitivity" in metrics:
            values["max_sensitivity"] = max_sensitivity(
                model, x, maps, target, explainer, n_samples=n_samples, radius=radius, mean=mean, std=std,
                batch_size=batch_size, seed=seed,
            )
        if truth is not None and any(m in metrics for m in LOCALISATION):
            for name, result in localisation(model, x, maps, target, truth, tolerance=tolerance, threshold=threshold).items():
                values[name] = result.scores
        if "randomisation" in metrics:
            result = model_randomisation(
                model, x, maps, target, explainer, layers=randomisation_layers, batch_size=batch_size, seed=seed
            )
            values["randomisation"] = result.similarity[:, -1]
            table.curves[(label, "randomisation")] = result.similarity
        for metric in metrics:
            table.values[(label, metric)] = values[metric]
            table.summaries[(label, metric)] = bootstrap_interval(values[metric], n_bootstrap, seed=seed)
        done = len(table.seconds)
        log.info(f"Scored {label} ({done}/{len(explainers)}) on {b} image(s) in {time.perf_counter() - started:.1f} s")
    table.recommendations = {metric: _recommend(table, metric) for metric in metrics}
    return table
