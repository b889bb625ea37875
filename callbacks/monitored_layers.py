"""Which layers FeatureMonitorCallback hooks: ``"auto"`` feature stages, or checked names."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import nn

from interpret.layers import feature_stages, stage_outputs

__all__ = ["auto_layer_names", "resolve_layers"]


def auto_layer_names(model: nn.Module, k: int = 3, input_size: tuple[int, int] | int | None = None) -> list[str]:
    """``k`` evenly spaced feature stages of ``model``, the last one included, each after its activation.

    The stages are the ``feature_info`` of the first timm model found in ``model`` (e.g.
    ``layer1..layer4`` of a ResNet, ``stages.0..3`` of a ConvNeXt, ``blocks.0..11`` of a ViT),
    prefixed with its name in ``model``. Any other model is probed with one forward of a blank
    image at ``input_size`` (:func:`interpret.layers.stage_outputs`): the output of each
    resolution's last activation, e.g. ``layer1, layer2, layer4`` of torchvision's resnet18, the
    ReLUs of a ``Sequential`` CNN; never a pre-activation convolution nor the logits. When the
    probe finds no spatial stage (no 4-D output), the children with parameters of the first
    module (going down from ``model`` while there is a single such child, or into its largest
    ``ModuleList``/``Sequential``) that has several, a final ``nn.Linear`` (the head) left out.

    Raises:
        ValueError: ``k < 1``, or no stage found (naming ``callbacks.feature_monitor.layer_names``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    candidates: list[str] = []
    for prefix, module in model.named_modules():
        names = [str(stage["module"]) for stage in feature_stages(module)]
        if names:
            candidates = [f"{prefix}.{n}" if prefix else n for n in names]
            break
    modules = dict(model.named_modules())
    if not candidates:
        # a module shared by several stages (one ReLU called everywhere) is named once
        candidates = list(dict.fromkeys(name for name, _ in stage_outputs(model, input_size)))
    if not candidates:
        candidates = _stage_children(model)
        if candidates and isinstance(modules.get(candidates[-1]), nn.Linear):
            candidates = candidates[:-1]
    candidates = [c for c in candidates if c in modules]
    if not candidates:
        raise ValueError(
            "FeatureMonitorCallback.layer_names=auto found no feature stages in the model; "
            "list named_modules() names in callbacks.feature_monitor.layer_names"
        )
    n = len(candidates)
    if n <= k:
        return candidates
    picks = sorted({round((i + 1) * n / k) - 1 for i in range(k)})
    return [candidates[i] for i in picks]


def _stage_children(model: nn.Module) -> list[str]:
    def with_params(module: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]

    prefix, module = "", model
    for _ in range(8):
        children = with_params(module)
        seqs = [(n, c) for n, c in children if isinstance(c, (nn.ModuleList, nn.Sequential)) and len(c) > 1]
        if seqs:
            name, seq = max(seqs, key=lambda nc: sum(p.numel() for p in nc[1].parameters()))
            return [f"{prefix}{name}.{n}" for n, _ in with_params(seq)]
        if len(children) == 1:
            name, module = children[0]
            prefix = f"{prefix}{name}."
            continue
        return [f"{prefix}{n}" for n, _ in children]
    return []


def resolve_layers(model: nn.Module, layer_names: Sequence[str], where: str = "layer_names") -> dict[str, nn.Module]:
    """Map each name to ``model.named_modules()[name]``; a wrong name fails with the closest names.

    Raises:
        ValueError: naming the unknown layer, the closest existing names and ``where`` to fix it.
    """
    modules = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    for name in layer_names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            if close:
                hint = f"closest names: {', '.join(close)}"
            else:
                top = [n for n in modules if n and "." not in n][:10]
                hint = f"top-level modules: {', '.join(top)}"
            raise ValueError(
                f"{where}: layer {name!r} is not in the model's named_modules() ({hint}). "
                f"Fix it in the callback's config (e.g. callbacks.feature_monitor.layer_names)."
            )
        out[name] = modules[name]
    return out
