"""How the reports print a value, and how they keep long series short."""

from __future__ import annotations

import math
from typing import Any, TypeVar

__all__ = ["fmt", "thin"]

T = TypeVar("T")


def fmt(value: Any) -> str:
    """A value as a table cell or tooltip shows it: 4 decimals, scientific notation when tiny or huge, "" for None."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def thin(items: list[T], limit: int) -> list[T]:
    """At most ``limit`` items, evenly spaced, the first and the last always kept."""
    if len(items) <= limit:
        return items
    picks = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in picks]
