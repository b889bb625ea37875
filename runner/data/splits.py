"""Deterministic, stratified train/val/test index splits."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices per class, so every split has every class in proportion; same seed, same split."""
    check_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * val_fraction))
        n_test = max(1, round(len(idx) * test_fraction))
        val.append(idx[:n_val])
        test.append(idx[n_val : n_val + n_test])
        train.append(idx[n_val + n_test :])
    out = []
    for parts in (train, val, test):
        joined = np.concatenate(parts)
        rng.shuffle(joined)
        out.append(joined)
    return out[0], out[1], out[2]


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise a ValueError naming the field unless both fractions are in (0, 1) and sum below 1."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < frac < 1.0:
            raise ValueError(f"data.{name} must be between 0 and 1 (exclusive), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"data.val_fraction + data.test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
