"""Model-randomisation sanity check (Adebayo et al. 2018), cascading and top-down.

A copy of the model (``copy.deepcopy``: the caller's model is never touched) has its layers
re-initialised one after the other from the output towards the input; after each layer the maps
are recomputed and compared with the maps of the trained model by the Spearman rank correlation
of ``|map|`` per image. An explanation that depends on what the model learned loses its
similarity as more layers are randomised; one that stays similar explains the image, not the
model.

Re-initialisation calls each module's ``reset_parameters()`` under a local seed (the global RNG
is untouched). For BatchNorm-like layers only the affine weight and bias are reset (to 1 and 0,
their initialisation): their running statistics are kept, because resetting those too gives a
network whose activations explode into NaNs (as in Quantus' MPRT).

A map with no rank information (constant) shares none with the original: its similarity is 0.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from scipy.stats import rankdata
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from interpret.methods.base import Explainer
from interpret.metrics._inputs import as_batch, as_maps, as_targets, call_explainer, check_chunk, predicted_classes

__all__ = ["RandomisationResult", "default_randomisation_layers", "model_randomisation", "spearman"]


@dataclass(frozen=True)
class RandomisationResult:
    """The similarity curve of a cascading randomisation.

    Attributes:
        layers: the layers randomised, in order (top-down); ``similarity[:, k]`` is measured
            after randomising ``layers[: k + 1]``.
        similarity: float32 ``(B, len(layers))`` Spearman correlation of ``|map|`` per image.
        maps: float32 ``(len(layers), B, H, W)`` maps after each step.
    """

    layers: tuple[str, ...]
    similarity: torch.Tensor
    maps: torch.Tensor

    @property
    def curve(self) -> torch.Tensor:
        """Mean similarity after each step, ``(len(layers),)``."""
        return self.similarity.mean(dim=0)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row of ``a`` and ``b`` ``(B, N)`` (average ranks for ties).

    Returns 0 for a row where either side is constant (no rank information).
    """
    ra = torch.from_numpy(rankdata(a.detach().cpu().double().numpy(), axis=1, method="average"))
    rb = torch.from_numpy(rankdata(b.detach().cpu().double().numpy(), axis=1, method="average"))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denominator = ra.norm(dim=1) * rb.norm(dim=1)
    rho = (ra * rb).sum(dim=1) / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, rho, torch.zeros_like(rho)).float()


def _has_own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def default_randomisation_layers(model: nn.Module) -> list[str]:
    """Every module holding its own parameters, output side first (reverse ``named_modules`` order)."""
    names = [name for name, module in model.named_modules() if name and _has_own_parameters(module)]
    if not names and _has_own_parameters(model):
        names = [""]
    return names[::-1]


def _reinitialise(module: nn.Module) -> None:
    for sub in module.modules():
        if not _has_own_parameters(sub):
            continue
        if isinstance(sub, _NormBase):
            with torch.no_grad():
                if sub.weight is not None:
                    sub.weight.fill_(1.0)
                if sub.bias is not None:
                    sub.bias.zero_()
        elif hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
        else:
            with torch.no_grad():
                for p in sub.parameters(recurse=False):
                    p.normal_(0.0, 0.02)


def _copy_with_explainer(
    model: nn.Module, explainer: str | Explainer | Callable[[nn.Module], object], explainer_kwargs: dict
) -> tuple[nn.Module, object]:
    """A deep copy of the model and an explainer bound to that copy."""
    if isinstance(explainer, Explainer):
        if explainer.model is not model:
            raise ValueError("explainer must explain the model given (explainer.model is a different module)")
        # one deepcopy keeps the explainer's references (model, target layer) pointing into the copy
        copied = copy.deepcopy(explainer)
        return copied.model, copied
    copied_model = copy.deepcopy(model)
    if isinstance(explainer, str):
        from interpret.methods.registry import get_explainer  # the registry imports every method

        return copied_model, get_explainer(explainer, copied_model, **explainer_kwargs)
    if callable(explainer):
        return copied_model, explainer(copied_model)
    raise ValueError(
        "explainer must be a method name (e.g. 'gradcam'), an Explainer of the model, or a factory "
        f"model -> explainer; got {type(explainer).__name__}"
    )


def model_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor | None,
    targets: torch.Tensor | None,
    explainer: str | Explainer | Callable[[nn.Module], object],
    *,
    layers: Sequence[str] | None = None,
    explainer_kwargs: dict | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> RandomisationResult:
    """Cascading top-down randomisation; the similarity of the maps after each layer.

    Args:
        model: the trained classifier (never modified: a deep copy is randomised).
        images: ``(B, C, H, W)`` normalised model inputs.
        maps: maps ``(B, H, W)`` of the trained model, or None to compute them.
        targets: ``(B,)`` classes explained (the same before and after randomisation), or None
            for the trained model's predictions.
        explainer: a registry method name, an :class:`~interpret.base.Explainer` of ``model``
            (deep-copied with it), or a factory ``model -> explainer``.
        layers: names of the modules to re-initialise, in order (each name re-initialises the
            whole module); default every module with its own parameters, output side first.
        explainer_kwargs: keywords for a method given by name (e.g. ``target_layer``).
        batch_size: images per explainer call.
        seed: seed of the re-initialisation (a forked RNG; the global state is restored).

    Returns:
        the layers, the ``(B, n_layers)`` similarities and the maps after each step.
    """
    check_chunk(batch_size)
    x = as_batch(model, images)
    b, _, h, w = x.shape
    targets = as_targets(targets, b, x.device)
    if targets is None:
        targets = predicted_classes(model, x, batch_size)
    names = list(default_randomisation_layers(model) if layers is None else layers)
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameters to randomise")
    known = [n for n, _ in model.named_modules()]
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"layers must be module names (str), got {type(name).__name__}")
        if name not in known:
            close = difflib.get_close_matches(name, [n for n in known if n], n=5, cutoff=0.5)
            hint = f" Closest names: {', '.join(repr(c) for c in close)}." if close else ""
            raise ValueError(
                f"layers: {name!r} is not a module of {type(model).__name__}.{hint} "
                "See model.named_modules() for every name."
            )
    copied_model, copied_explainer = _copy_with_explainer(model, explainer, dict(explainer_kwargs or {}))
    if maps is None:
        maps = call_explainer(copied_explainer, x, targets, batch_size)
    original = as_maps(maps, b, (h, w)).abs().flatten(1)
    modules = dict(copied_model.named_modules())
    similarities, all_maps = [], []
    devices = [x.device.index] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            _reinitialise(modules[name])
            randomised = call_explainer(copied_explainer, x, targets, batch_size)
            all_maps.append(randomised.float().cpu())
            similarities.append(spearman(original, randomised.abs().flatten(1)))
    return RandomisationResult(tuple(names), torch.stack(similarities, dim=1), torch.stack(all_maps))
