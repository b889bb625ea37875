"""Argument checks shared by every explainer, task and callback: one helper per kind of value.

Each raises a ``ValueError`` that names the argument, what is allowed and what was given, e.g.
``max_detections must be an int >= 1, got 0``.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["non_negative_number", "positive_int", "unit_interval"]


def positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """``value`` as an ``int >= 1`` (``bool`` is refused); None passes when ``allow_none``.

    Args:
        value: the value given.
        name: how the error names it, e.g. ``"max_detections"`` or ``"`num_samples`"``.
        allow_none: accept None (returned as is).

    Raises:
        ValueError: ``"{name} must be an int >= 1, got {value!r}"`` (``None or an int`` when allowed).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "None or an int >= 1" if allow_none else "an int >= 1"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def unit_interval(value: Any, name: str, *, what: str = "a number in [0, 1]") -> float:
    """``value`` as a float in [0, 1] (``bool`` is refused).

    Args:
        value: the value given.
        name: how the error names it.
        what: how the error describes the allowed values.

    Raises:
        ValueError: ``"{name} must be {what}, got {value!r}"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def non_negative_number(value: Any, name: str) -> float:
    """``value`` as a float ``>= 0`` (``bool`` is refused).

    Raises:
        ValueError: ``"{name} must be a number >= 0, got {value!r}"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)
