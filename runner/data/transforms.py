"""The image transforms of training and evaluation, built by ``timm.data.create_transform``.

``data.augment`` picks a preset:

- ``none``: resize to ``image_size`` x ``image_size`` (squash), tensor, normalise; the same for training
  and evaluation.
- ``basic``: ``none`` plus a random horizontal flip of training images (this project's transform
  before the presets; bilinear resizing unless ``data.interpolation`` says otherwise).
- ``timm``: timm's ImageNet training recipe: ``RandomResizedCrop`` (``data.scale``, ``data.ratio``),
  flip (``data.hflip``), ``data.auto_augment`` (e.g. ``rand-m9-mstd0.5-inc1``), ``data.color_jitter``
  (used when there is no auto_augment, as in timm), random erasing (``data.re_prob``); evaluation
  resizes by ``crop_pct`` and centre-crops (the weights' own ``crop_pct``/``crop_mode`` unless
  ``data.crop_pct`` is set).

Other datamodules (``data=hf``) build theirs with::

    recipe = TransformRecipe(augment="timm", scale=..., ...)   # checks every key up front
    train_tf = recipe.build(train=True, data_config=resolve_data_config(model_config, image_size, mean, std))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AUGMENT_PRESETS", "TransformRecipe", "build_transforms", "check_augment", "guard_posterize", "resolve_data_config",
]

#: what ``data.augment`` can be
AUGMENT_PRESETS: tuple[str, ...] = ("none", "basic", "timm")

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "random")


def check_augment(augment: Any, allowed: Sequence[str] = AUGMENT_PRESETS, key: str = "data.augment") -> str:
    """``augment`` as a preset name (``true``/``false`` of older configs mean ``basic``/``none``).

    Raises:
        ValueError: one line naming ``key`` and the allowed values.
    """
    if augment is True:
        augment = "basic"
    elif augment is False or augment is None:
        augment = "none"
    if augment not in allowed:
        raise ValueError(f"{key} can be {', '.join(allowed)}, got {augment!r}")
    return str(augment)


def resolve_data_config(
    model_config: Mapping[str, Any] | None,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str | None = None,
    crop_pct: float | None = None,
) -> dict[str, Any]:
    """The model's timm data config with ``data.*`` on top: input size, mean, std, and the optional keys.

    ``model_config`` is ``model.data_config`` (``timm.data.resolve_model_data_config``), or None
    (then bilinear, ``crop_pct`` 0.875 and centre crop, timm's defaults).
    """
    config: dict[str, Any] = {"interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center"}
    config.update({k: v for k, v in (model_config or {}).items() if v is not None})
    config.update(input_size=(3, image_size, image_size), mean=tuple(mean), std=tuple(std))
    if interpolation is not None:
        config["interpolation"] = interpolation
    if crop_pct is not None:
        config["crop_pct"] = crop_pct
    return config


def build_transforms(
    augment: str,
    data_config: Mapping[str, Any],
    train: bool,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    auto_augment: str | None = None,
    color_jitter: float | None = 0.4,
    re_prob: float = 0.0,
    interpolation: str | None = None,
) -> Callable[[Any], Any]:
    """The transform of one split for ``augment`` (a preset name, see the module docstring).

    Args:
        augment: ``none``, ``basic`` or ``timm``.
        data_config: :func:`resolve_data_config`'s result (input_size, mean, std, interpolation, crop_pct, crop_mode).
        train: the training transform (else evaluation's).
        scale, ratio, hflip, auto_augment, color_jitter, re_prob: the ``timm`` preset's training recipe.
        interpolation: the resize interpolation; None: the data config's (``timm``) or bilinear (``none``, ``basic``).

    Returns:
        A callable PIL image -> normalised ``(C, H, W)`` float tensor.
    """
    from timm.data import create_transform
    from torchvision import transforms as T

    augment = check_augment(augment)
    size = tuple(data_config["input_size"])[-2:]
    common: dict[str, Any] = {"mean": tuple(data_config["mean"]), "std": tuple(data_config["std"])}
    if augment in ("none", "basic"):
        squash = create_transform(
            size, is_training=False, crop_pct=1.0, crop_mode="squash", interpolation=interpolation or "bilinear", **common
        )
        if augment == "basic" and train and hflip > 0:
            squash.transforms.insert(1, T.RandomHorizontalFlip(hflip))
        return squash
    interp = interpolation or data_config.get("interpolation", "bilinear")
    if train:
        return guard_posterize(create_transform(
            size, is_training=True, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip,
            auto_augment=auto_augment, color_jitter=color_jitter if color_jitter is not None else 0.0,
            re_prob=re_prob, interpolation=interp, **common,
        ))
    return create_transform(
        size, is_training=False, crop_pct=data_config.get("crop_pct"), crop_mode=data_config.get("crop_mode"),
        interpolation=interp if interp != "random" else "bilinear", **common,
    )


@dataclass(frozen=True)
class TransformRecipe:
    """The ``data.*`` keys of the transforms, checked once (``__post_init__``) with the key named on a bad value."""

    augment: Any = "timm"
    scale: Sequence[float] = (0.08, 1.0)
    ratio: Sequence[float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    auto_augment: str | None = None
    color_jitter: float | None = 0.4
    re_prob: float = 0.0
    interpolation: str | None = None
    crop_pct: float | None = None
    allowed: tuple[str, ...] = AUGMENT_PRESETS

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", check_augment(self.augment, self.allowed))
        for key in ("scale", "ratio"):
            value = getattr(self, key)
            if len(tuple(value)) != 2 or not 0 < float(value[0]) <= float(value[1]):
                raise ValueError(f"data.{key} must be [low, high] with 0 < low <= high, got {list(value)}")
        if float(self.scale[1]) > 1:
            raise ValueError(f"data.scale must lie in (0, 1], got {list(self.scale)}")
        for key in ("hflip", "re_prob"):
            if not 0 <= float(getattr(self, key)) <= 1:
                raise ValueError(f"data.{key} must be a probability in [0, 1], got {getattr(self, key)!r}")
        if self.crop_pct is not None and not 0 < float(self.crop_pct) <= 1:
            raise ValueError(f"data.crop_pct must be in (0, 1] or null, got {self.crop_pct!r}")
        if self.interpolation is not None and self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"data.interpolation can be {', '.join(_INTERPOLATIONS)} or null, got {self.interpolation!r}")
        if self.auto_augment is not None:
            _check_auto_augment(self.auto_augment)

    def build(self, train: bool, data_config: Mapping[str, Any]) -> Callable[[Any], Any]:
        """:func:`build_transforms` with this recipe."""
        return build_transforms(
            self.augment, data_config, train, scale=self.scale, ratio=self.ratio, hflip=self.hflip,
            auto_augment=self.auto_augment, color_jitter=self.color_jitter, re_prob=self.re_prob,
            interpolation=self.interpolation,
        )


def _posterize_at_least_one_bit(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    from timm.data import auto_augment

    return auto_augment.posterize(img, max(1, int(bits_to_keep)), **kwargs)


def guard_posterize(transform: Any) -> Any:
    """Keep timm's posterize ops at >= 1 bit; returns ``transform`` (its augment ops changed in place).

    timm 1.0's ``PosterizeIncreasing`` asks for 0 bits at magnitude 10 (``rand-m9-mstd0.5-inc1``
    reaches it when the magnitude noise is clipped at the top, a few percent of its draws), which
    Pillow >= 13 refuses (``ValueError: bits must be between or equal to 1 and 8``) in the middle of
    training; older Pillow made such an image black. One bit keeps it nearly black.
    """
    for step in getattr(transform, "transforms", []):
        ops = list(getattr(step, "ops", None) or [])  # RandAugment, AugMix
        ops += [op for sub in getattr(step, "policy", None) or [] for op in sub]  # AutoAugment
        for op in ops:
            if str(getattr(op, "name", "")).startswith("Posterize"):
                op.aug_fn = _posterize_at_least_one_bit
    return transform


def _check_auto_augment(spec: str) -> None:
    """Build the auto-augment policy once, so a bad ``data.auto_augment`` fails at config time."""
    from timm.data import create_transform

    try:
        create_transform(32, is_training=True, auto_augment=spec)
    except Exception as err:  # noqa: BLE001 - timm raises assorted errors for bad specs
        raise ValueError(
            f"data.auto_augment: timm cannot read {spec!r} ({err}); e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, "
            "trivialaugment, original, v0, or null"
        ) from None
