"""Method names -> explainer factories, so callers can say ``method="gradcam"``."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from interpret.methods.attention import AttentionFlow, AttentionRollout
from interpret.methods.base import Explainer
from interpret.methods.gradcam import GradCAM, GradCAMPlusPlus
from interpret.methods.integrated_gradients import IntegratedGradients
from interpret.methods.saliency import Saliency
from interpret.methods.smoothgrad import SmoothGrad

__all__ = [
    "ExplainerFactory",
    "available_methods",
    "canonical_method",
    "get_explainer",
    "method_keywords",
    "register_method",
]

ExplainerFactory = Callable[..., Explainer]

_METHODS: dict[str, ExplainerFactory] = {}
_ALIASES: dict[str, str] = {
    "grad_cam": "gradcam",
    "gradcampp": "gradcam++",
    "gradcam_plus_plus": "gradcam++",
    "gradcamplusplus": "gradcam++",
    "ig": "integrated_gradients",
    "integratedgradients": "integrated_gradients",
    "smooth_grad": "smoothgrad",
    "rollout": "attention_rollout",
    "flow": "attention_flow",
}


def register_method(name: str, factory: ExplainerFactory, *, overwrite: bool = False) -> None:
    """Register ``factory(model, **kwargs) -> Explainer`` under ``name``.

    Args:
        name: the method name callers pass as ``method=`` (case-insensitive).
        factory: a callable taking the model first, e.g. an Explainer subclass.
        overwrite: replace an existing registration instead of raising.

    Raises:
        ValueError: an empty name, a name already registered (without ``overwrite``), or a
            factory that is not callable.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"method name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    key = name.strip().lower()
    if key in _METHODS and not overwrite:
        raise ValueError(f"method {key!r} is already registered; pass overwrite=True to replace it")
    _METHODS[key] = factory


def available_methods() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_METHODS)


def _suggest(key: str) -> list[str]:
    """Registered method names close to ``key`` (an alias that matches counts as its method)."""
    names = list(_METHODS) + [alias for alias, target in _ALIASES.items() if target in _METHODS]
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.75)
    return list(dict.fromkeys(_ALIASES.get(name, name) for name in close))[:3]


def _lookup(method: str) -> tuple[str, ExplainerFactory]:
    if not isinstance(method, str):
        raise ValueError(f"method must be a string, one of {', '.join(_METHODS)}; got {type(method).__name__}")
    key = method.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        close = _suggest(key)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown method {method!r}; available: {', '.join(_METHODS)}.{hint}")
    return key, _METHODS[key]


def canonical_method(method: str) -> str:
    """The registered name of ``method`` (aliases and case resolved).

    Raises:
        ValueError: an unknown method, naming the available ones (and close real names, if any).
    """
    return _lookup(method)[0]


def method_keywords(method: str, base: str | None = None) -> tuple[str, ...] | None:
    """The keywords ``get_explainer(method, model, **kwargs)`` accepts, or None when any goes.

    For ``"smoothgrad"`` the keywords of its base method (``base``, default ``"saliency"``) are
    included, since they are passed on to it.
    """
    key, factory = _lookup(method)
    try:
        parameters = list(inspect.signature(factory).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        if key != "smoothgrad":
            return None
        inner = method_keywords(base if isinstance(base, str) else "saliency")
        if inner is None:
            return None
        names += [n for n in inner if n not in names]
    return tuple(names)


def get_explainer(method: str, model: nn.Module, **kwargs: Any) -> Explainer:
    """Build the explainer registered under ``method`` for ``model``.

    Args:
        method: ``"gradcam" | "gradcam++" | "integrated_gradients" | "smoothgrad" |
            "attention_rollout" | "attention_flow"`` (also ``"saliency"`` and anything registered).
        model: the model to explain.
        **kwargs: passed to the method's constructor (e.g. ``target_layer``, ``steps``).
            For ``"smoothgrad"``: ``base`` (a method name or an Explainer, default
            ``"saliency"``), ``noise_level``, ``num_samples``, ``internal_batch_size``, ``seed``;
            other keywords go to the base method.

    Raises:
        ValueError: an unknown method (with the available ones), or keywords the method does not take.
    """
    key, factory = _lookup(method)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: just call
        signature = None
    if signature is not None:
        try:
            signature.bind(model, **kwargs)
        except TypeError:
            allowed = [
                p.name
                for p in list(signature.parameters.values())[1:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            raise ValueError(
                f"method {key!r} takes the keywords {', '.join(allowed) or 'none'}; got {', '.join(sorted(kwargs))}"
            ) from None
    return factory(model, **kwargs)


def _smoothgrad(
    model: nn.Module,
    base: str | Explainer = "saliency",
    noise_level: float = 0.15,
    num_samples: int = 50,
    internal_batch_size: int = 64,
    seed: int = 0,
    **base_kwargs: Any,
) -> SmoothGrad:
    """SmoothGrad over ``base`` (a method name built for ``model`` with ``base_kwargs``, or an Explainer)."""
    if isinstance(base, Explainer):
        if base_kwargs:
            raise ValueError(f"base is an explainer already; unexpected keywords {', '.join(sorted(base_kwargs))}")
        explainer = base
    else:
        if isinstance(base, str) and _ALIASES.get(base.lower(), base.lower()) == "smoothgrad":
            raise ValueError("smoothgrad cannot use smoothgrad as its base")
        explainer = get_explainer(base, model, **base_kwargs)
    return SmoothGrad(
        explainer, noise_level=noise_level, num_samples=num_samples, internal_batch_size=internal_batch_size, seed=seed
    )


register_method("gradcam", GradCAM)
register_method("gradcam++", GradCAMPlusPlus)
register_method("integrated_gradients", IntegratedGradients)
register_method("smoothgrad", _smoothgrad)
register_method("attention_rollout", AttentionRollout)
register_method("attention_flow", AttentionFlow)
register_method("saliency", Saliency)
