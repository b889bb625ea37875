"""``model.mixup``: timm's Mixup/CutMix, its keys checked up front."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from timm.data import Mixup

__all__ = ["MIXUP_KEYS", "MIXUP_MODES", "build_mixup"]

#: the keys ``model.mixup`` takes (timm.data.Mixup's arguments)
MIXUP_KEYS: tuple[str, ...] = ("mixup_alpha", "cutmix_alpha", "cutmix_minmax", "prob", "switch_prob", "mode", "label_smoothing")
#: what ``model.mixup.mode`` can be
MIXUP_MODES: tuple[str, ...] = ("batch", "pair", "elem")


def build_mixup(config: Mapping[str, Any] | None, num_classes: int, label_smoothing: float = 0.0) -> Mixup | None:
    """timm's ``Mixup`` for ``model.mixup``, or None when it is off (null, or both alphas 0 or ``prob`` 0).

    ``label_smoothing`` null in ``config`` takes ``model.label_smoothing``.

    Raises:
        ValueError: one line naming the ``model.mixup.*`` key and what is allowed.
    """
    if not config:
        return None
    unknown = sorted(set(config) - set(MIXUP_KEYS))
    if unknown:
        raise ValueError(f"model.mixup: unknown key(s) {unknown}; allowed: {', '.join(MIXUP_KEYS)}")
    args = {k: v for k, v in config.items() if v is not None}
    for key in ("mixup_alpha", "cutmix_alpha"):
        value = args.get(key, 0.0)
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"model.mixup.{key} must be a number >= 0 (0: off), got {value!r}")
    for key in ("prob", "switch_prob", "label_smoothing"):
        value = args.get(key, 0.0)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"model.mixup.{key} must be in [0, 1], got {value!r}")
    if args.get("mode", "batch") not in MIXUP_MODES:
        raise ValueError(f"model.mixup.mode can be {', '.join(MIXUP_MODES)}, got {args['mode']!r}")
    args.setdefault("mixup_alpha", 0.0)
    args.setdefault("cutmix_alpha", 0.0)
    if (args["mixup_alpha"] == 0 and args["cutmix_alpha"] == 0 and args.get("cutmix_minmax") is None) or args.get(
        "prob", 1.0
    ) == 0:
        return None
    args.setdefault("label_smoothing", float(label_smoothing))
    if args.get("cutmix_minmax") is not None:
        args["cutmix_minmax"] = tuple(args["cutmix_minmax"])
    return Mixup(num_classes=num_classes, **args)
