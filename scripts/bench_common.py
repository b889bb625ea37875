"""Timing helpers the benchmarks share: alternating rounds, medians, a bootstrap interval, frozen parameters.

Imported by the entry scripts beside it (``python scripts/bench_*.py`` puts ``scripts/`` first on
``sys.path``); plain PyTorch and the standard library only, nothing of the project.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["Frozen", "alternating_rounds", "median_interval", "sync"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternating_rounds(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, measured in alternating rounds (one call of each per round).

    Alternating keeps the ratios fair on a shared, noisy machine: a slow spell slows every
    contender of a round alike, instead of the one that happened to run then.
    """
    for fn in fns.values():  # warm-up
        fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def median_interval(values: list[float], rng: random.Random, resamples: int = 2000) -> tuple[float, float]:
    """A percentile-bootstrap 95% interval of the median of ``values`` (rounds resampled)."""
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


class Frozen:
    """Freeze every parameter inside the block, restore ``requires_grad`` after (plain PyTorch)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.flags: list[tuple[torch.nn.Parameter, bool]] = []

    def __enter__(self) -> None:
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.flags:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
