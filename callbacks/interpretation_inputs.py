"""The arguments and sample batches of :class:`callbacks.interpretation.InterpretationCallback`, checked.

Small pure helpers the callback calls at construction and setup: yaml containers to plain python,
``mean``/``std`` and ``method_kwargs`` checks, and the first images of a validation loader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor

import interpret

__all__ = ["OWN_ARGUMENTS", "check_method_kwargs", "check_normalization", "first_images", "plain"]

#: keywords with their own argument; method_kwargs may not set them
OWN_ARGUMENTS = ("target_layer",)


def plain(value: Any) -> Any:
    """OmegaConf containers (from a yaml) -> plain python containers."""
    if value is None or isinstance(value, (Tensor, str, Image.Image)):
        return value
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (ListConfig, DictConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def check_normalization(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` as float tuples, None when both are None; both or neither must be given."""
    if mean is None and std is None:
        return None
    values = []
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, Tensor):
            value = value.tolist()
        if (
            not isinstance(value, Sequence) or isinstance(value, str) or not value
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise ValueError(f"`{name}` must be one number per image channel (e.g. [0.5, 0.5, 0.5]), got {value!r}")
        values.append(tuple(float(v) for v in value))
    if len(values[0]) != len(values[1]) or min(values[1]) <= 0:
        raise ValueError(f"`mean` and `std` need as many values, std > 0, got mean={mean!r}, std={std!r}")
    return values[0], values[1]


def first_images(loader: Any, n: int) -> tuple[Tensor | None, Tensor | None]:
    """The first ``n`` images (and integer labels, when the batches have them) of a loader's batches.

    A batch is an image tensor, a ``(images, labels, ...)`` tuple/list, or a dict whose first
    4-D float tensor holds the images (``label``/``labels``/``target``/``targets`` the labels).
    """
    images: list[Tensor] = []
    labels: list[Tensor] = []
    for batch in loader:
        found, label = None, None
        if isinstance(batch, Tensor):
            found = batch
        elif isinstance(batch, Mapping):
            found = next((v for v in batch.values() if isinstance(v, Tensor) and v.ndim == 4), None)
            label = next((batch[k] for k in ("label", "labels", "target", "targets") if k in batch), None)
        elif isinstance(batch, Sequence) and batch:
            found, label = batch[0], batch[1] if len(batch) > 1 else None
        if not isinstance(found, Tensor) or found.ndim != 4 or not found.is_floating_point():
            return None, None
        images.append(found.detach().cpu())
        ok = isinstance(label, Tensor) and label.ndim == 1 and not label.is_floating_point()
        labels.append(label.detach().cpu() if ok and label.shape[0] == found.shape[0] else None)
        if sum(x.shape[0] for x in images) >= n:
            break
    if not images:
        return None, None
    label_tensor = torch.cat(labels)[:n] if all(x is not None for x in labels) else None
    return torch.cat(images)[:n], label_tensor


def check_method_kwargs(method: str, method_kwargs: Any) -> dict[str, Any]:
    """``method_kwargs`` as a dict whose keywords ``method`` takes (values are checked at setup)."""
    if method_kwargs is None:
        return {}
    if not isinstance(method_kwargs, Mapping) or not all(isinstance(k, str) for k in method_kwargs):
        raise ValueError(
            f"`method_kwargs` must be a mapping of keyword names to values (e.g. {{steps: 16}}), "
            f"got {method_kwargs!r}"
        )
    kwargs = dict(method_kwargs)
    own = sorted(k for k in kwargs if k in OWN_ARGUMENTS)
    if own:
        raise ValueError(f"`method_kwargs` may not set {', '.join(own)}; use the callback's own `{own[0]}` argument")
    accepted = interpret.method_keywords(method, kwargs.get("base"))
    if accepted is not None:
        unknown = sorted(k for k in kwargs if k not in accepted)
        if unknown:
            allowed = [k for k in accepted if k not in OWN_ARGUMENTS]
            raise ValueError(
                f"`method_kwargs` has {', '.join(repr(k) for k in unknown)}, which method "
                f"{interpret.canonical_method(method)!r} does not take; allowed: {', '.join(allowed)}"
            )
    return kwargs
