"""Model introspection: layer names, automatic target layers, ViT token grids, normalisation.

Everything here works on a bare timm model and on a wrapper that holds one (for example the
project's ``ImageClassifier``, whose timm model sits at ``backbone``): the timm model is found
with ``named_modules()`` and its names are prefixed with its own path.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from interpret.images import IMAGENET_MEAN, IMAGENET_STD
from interpret.model_state import frozen_eval
from interpret.modules import expected_in_channels, is_activation, model_device, model_dtype

__all__ = [
    "data_image_size",
    "data_normalization",
    "default_target_layer",
    "expected_in_channels",
    "feature_stages",
    "find_timm_model",
    "find_vision_transformer",
    "input_size_of",
    "is_vision_transformer",
    "layer_channels",
    "model_device",
    "model_dtype",
    "resolve_layer",
    "normalization_of",
    "resolve_normalization",
    "stage_outputs",
    "tokens_to_grid",
]


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}.{name}" if name else prefix


def _is_timm_model(module: nn.Module) -> bool:
    return hasattr(module, "pretrained_cfg") or (
        hasattr(module, "feature_info") and hasattr(module, "forward_features") and hasattr(module, "forward_head")
    )


def find_timm_model(model: nn.Module) -> tuple[str, nn.Module] | None:
    """Find the outermost timm model inside ``model`` (``model`` itself included).

    Args:
        model: any module.

    Returns:
        ``(name, module)`` where ``name`` is its ``named_modules()`` path (``""`` for ``model``
        itself), or None when no timm model is found.
    """
    for name, module in model.named_modules():
        if _is_timm_model(module):
            return name, module
    return None


def is_vision_transformer(module: nn.Module) -> bool:
    """Whether ``module`` looks like a timm Vision Transformer (patch embedding, blocks, prefix tokens)."""
    return (
        hasattr(module, "patch_embed")
        and isinstance(getattr(module, "blocks", None), nn.Sequential | nn.ModuleList)
        and hasattr(module, "num_prefix_tokens")
    )


def find_vision_transformer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """Find the outermost timm Vision Transformer inside ``model``; ``(name, module)`` or None."""
    for name, module in model.named_modules():
        if is_vision_transformer(module):
            return name, module
    return None


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Turn a layer name or module into ``(name, module)`` inside ``model``.

    Args:
        model: the model that holds the layer.
        layer: a ``named_modules()`` name such as ``"backbone.layer4"``, or the module itself.

    Raises:
        ValueError: the name does not exist (the message lists the closest existing names), or
            the module is not part of ``model``.
        TypeError: ``layer`` is neither a string nor a module.
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise ValueError(
            f"target_layer: the given {type(layer).__name__} module is not part of the model "
            f"{type(model).__name__}; pass one of its submodules or a name from model.named_modules()"
        )
    if not isinstance(layer, str):
        raise TypeError(
            f"target_layer must be a layer name (str), an nn.Module or None, got {type(layer).__name__}"
        )
    if layer in modules:
        return layer, modules[layer]
    names = [n for n in modules if n]
    suffix = [n for n in names if n.endswith("." + layer)]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hints = list(dict.fromkeys(suffix[:3] + close))[:5]
    hint = f" Closest names: {', '.join(repr(h) for h in hints)}." if hints else ""
    raise ValueError(
        f"target_layer {layer!r} is not a layer of {type(model).__name__}.{hint} "
        "See model.named_modules() for every name."
    )


def feature_stages(module: nn.Module) -> list[dict[str, Any]]:
    """The feature stages timm declares for ``module`` (its ``feature_info``), first to last.

    Each entry is a dict with at least ``module`` (the stage's name inside ``module``) and, when
    timm gives them, ``num_chs`` and ``reduction``. A ``features_only`` model's ``FeatureInfo``
    gives its selected (``out_indices``) stages; a plain timm model's list gives every stage. A
    module without ``feature_info`` gives ``[]``.
    """
    info = getattr(module, "feature_info", None)
    if info is None:
        return []
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    return [dict(e) for e in entries if isinstance(e, dict) and e.get("module")]


def data_normalization(source: Any, model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` images are normalised with: ``source.mean``/``source.std`` (e.g. a
    datamodule), else the model's own (:func:`resolve_normalization`), else ImageNet's.

    :func:`normalization_of` is the same without the ImageNet fallback (None when unknown)."""
    found = normalization_of(source, model)
    mean, std = found if found is not None else (IMAGENET_MEAN, IMAGENET_STD)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def normalization_of(source: Any, model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The ``(mean, std)`` declared by ``source`` (e.g. a datamodule's ``mean``/``std``
    attributes), else by the model (``mean``/``std`` attributes, its ``data_config``, or the timm
    pretrained config of the timm model inside); None when neither declares any."""
    for owner in (source, model):
        mean, std = getattr(owner, "mean", None), getattr(owner, "std", None)
        if _is_stats(mean) and _is_stats(std):
            return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    return resolve_normalization(model)


def _is_stats(value: Any) -> bool:
    """A per-channel statistic: a non-empty sequence (or 1-D tensor) of numbers; not a method."""
    if isinstance(value, torch.Tensor):
        return value.ndim == 1 and value.numel() > 0
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        return False
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def data_image_size(source: Any, model: nn.Module, default: int = 224) -> tuple[int, int]:
    """The ``(H, W)`` images are resized to: ``source.image_size`` (e.g. a datamodule), else the
    model's own (:func:`input_size_of`), else ``default``."""
    size = getattr(source, "image_size", None)
    if size is None:
        size = input_size_of(model) or default
    if isinstance(size, int):
        return (size, size)
    return (int(size[-2]), int(size[-1]))


def default_target_layer(
    model: nn.Module, input_size: tuple[int, int] | int | None = None, min_size: int = 4
) -> tuple[str, nn.Module]:
    """Choose the layer GradCAM explains when none is given.

    - timm Vision Transformers: ``blocks[-1].norm1``, the normalised input tokens of the last
      block. Its patch tokens reach the class token through the last attention; the last block's
      *output* patch tokens do not reach a class-token head at all (an all-zero map).
    - other timm models: the last entry of ``feature_info`` (the last spatial feature stage, e.g.
      ``layer4`` for a ResNet, ``stages.3`` for a ConvNeXt) whose map is at least
      ``min_size`` x ``min_size`` at ``input_size`` (from each stage's ``reduction``); a 1x1 or
      2x2 map says nothing about where. Default resnet18 at 32 px: ``layer2`` (4x4); at 224 px:
      ``layer4`` (7x7). When even the first stage is smaller, the first stage.
    - any other model: the same size rule on its stage outputs after their activation, found
      by one forward of a blank image (:func:`stage_outputs`): torchvision's resnet18 at 64 px
      gives ``layer3`` (4x4; ``layer4`` is 2x2), at 224 px ``layer4`` (7x7). When the probe
      finds no such output (the forward fails, or the activations are functional), its last
      ``nn.Conv2d``.

    Names are prefixed with the timm model's own path inside ``model``.

    Args:
        model: the model.
        input_size: ``(H, W)`` or an int, the size the model is run at; None: the model's timm
            data config (else no size rule).
        min_size: the smallest acceptable map side, in cells.

    Raises:
        ValueError: no suitable layer was found (pass ``target_layer`` explicitly).
    """
    vit = find_vision_transformer(model)
    if vit is not None:
        prefix, module = vit
        blocks = module.blocks
        if len(blocks) == 0:
            raise ValueError(f"{type(module).__name__} has no transformer blocks; pass target_layer explicitly")
        last = len(blocks) - 1
        name = f"blocks.{last}.norm1" if hasattr(blocks[last], "norm1") else f"blocks.{last}"
        return resolve_layer(model, _join(prefix, name))
    found = find_timm_model(model)
    if found is not None:
        prefix, module = found
        entries = feature_stages(module)
        if entries:
            if isinstance(input_size, int):
                input_size = (input_size, input_size)
            size = input_size if input_size is not None else input_size_of(model)
            chosen = entries[-1]
            if size is not None and all(e.get("reduction") for e in entries):
                large = [e for e in entries if min(size) // int(e["reduction"]) >= min_size]
                chosen = large[-1] if large else entries[0]
            return resolve_layer(model, _join(prefix, chosen["module"]))
    stages = stage_outputs(model, input_size, require_activation=True)
    if stages:
        large = [name for name, (h, w) in stages if min(h, w) >= min_size]
        return resolve_layer(model, large[-1] if large else stages[0][0])
    last_conv = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last_conv = (name, module)
    if last_conv is None:
        raise ValueError(
            f"cannot choose a target layer automatically for {type(model).__name__}: it is not a timm "
            "model and has no nn.Conv2d; pass target_layer (a name from model.named_modules())"
        )
    return last_conv


def _own_channels(module: nn.Module) -> int | None:
    for attr in ("out_channels", "out_features", "num_features", "num_channels"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, tuple | list) and shape:
        return int(shape[-1])
    return None


def layer_channels(model: nn.Module, name: str, module: nn.Module) -> int | None:
    """The number of channels ``module`` (called ``name`` inside ``model``) outputs, or None if unknown.

    A layer that declares it (``out_channels``, ``out_features``, ``num_features``,
    ``normalized_shape``) gives its own; a container gives timm's ``feature_info`` ``num_chs``
    when it is a feature stage, else the count of the last such layer inside it.
    """
    own = _own_channels(module)
    if own is not None:
        return own
    found = find_timm_model(model)
    if found is not None:
        prefix, timm_model = found
        for entry in feature_stages(timm_model):
            if _join(prefix, entry["module"]) == name:
                if entry.get("num_chs"):
                    return int(entry["num_chs"])
    last = None
    for sub in module.modules():
        channels = _own_channels(sub)
        if channels is not None:
            last = channels
    return last


def input_size_of(model: nn.Module) -> tuple[int, int] | None:
    """The ``(H, W)`` the model is run at, or None when unknown.

    Read from, in order: an ``image_size`` the model declares (an attribute, or a saved
    hyper-parameter such as this project's ``ImageClassifier(image_size=32)``), the model's
    ``data_config``, timm's data config of the timm model inside.
    """
    declared: Any = getattr(model, "image_size", None)
    if declared is None:
        hparams = getattr(model, "hparams", None)
        declared = hparams.get("image_size") if isinstance(hparams, Mapping) else None
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > 0:
        return declared, declared
    if isinstance(declared, tuple | list) and len(declared) in (2, 3) and all(isinstance(v, int) for v in declared):
        return int(declared[-2]), int(declared[-1])
    config = _data_config(model)
    size = config.get("input_size") if config else None
    if size is None or len(size) < 2:
        return None
    return int(size[-2]), int(size[-1])


def tokens_to_grid(tokens: torch.Tensor, vit: nn.Module, image_size: tuple[int, int]) -> torch.Tensor:
    """Turn ViT tokens ``(B, N, C)`` into a feature map ``(B, C, h, w)`` on the patch grid.

    The grid comes from the model's own patch embedding for this input size
    (``patch_embed.dynamic_feat_size`` or ``patch_embed.grid_size``) and the first
    ``vit.num_prefix_tokens`` tokens (class and register tokens) are dropped.

    Raises:
        ValueError: the token count does not match prefix tokens + grid cells.
    """
    if tokens.ndim != 3:
        raise ValueError(f"expected ViT tokens of shape (B, N, C), got {tuple(tokens.shape)}")
    prefix = int(getattr(vit, "num_prefix_tokens", 0))
    patch_embed = vit.patch_embed
    if hasattr(patch_embed, "dynamic_feat_size"):
        gh, gw = patch_embed.dynamic_feat_size(tuple(image_size))
    else:
        gh, gw = patch_embed.grid_size
    b, n, c = tokens.shape
    if n - prefix != gh * gw:
        raise ValueError(
            f"cannot reshape {n} tokens to a {gh}x{gw} patch grid with {prefix} prefix tokens "
            f"(input {image_size[0]}x{image_size[1]}); is the layer inside the transformer blocks?"
        )
    return tokens[:, prefix:].reshape(b, gh, gw, c).permute(0, 3, 1, 2)


def _data_config(model: nn.Module) -> dict[str, Any] | None:
    config: Any = None
    try:
        config = getattr(model, "data_config", None)
    except Exception:  # a property may fail on an odd wrapper; fall back to timm
        config = None
    if isinstance(config, dict):
        return config
    found = find_timm_model(model)
    if found is None:
        return None
    import timm.data  # local import: only needed for timm models

    try:
        return dict(timm.data.resolve_model_data_config(found[1]))
    except Exception:
        return None


def resolve_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The ``(mean, std)`` the model's inputs are normalised with, or None when unknown.

    Read from ``model.data_config`` when the model exposes one, else from the timm model inside
    through ``timm.data.resolve_model_data_config``. Explainers take ``mean``/``std`` arguments
    that override this (a datamodule may normalise with other statistics).
    """
    config = _data_config(model)
    if not config:
        return None
    mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None:
        return None
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def stage_outputs(
    model: nn.Module,
    input_size: tuple[int, int] | int | None = None,
    *,
    in_channels: int | None = None,
    require_activation: bool = False,
) -> list[tuple[str, tuple[int, int]]]:
    """The stage outputs of any CNN, first to last, with their map size ``(h, w)``, by one forward.

    One blank image (zeros of ``in_channels`` (default: :func:`expected_in_channels`, else 3) x
    ``input_size``; without ``input_size`` the model's ``example_input_array`` when it has one,
    else :func:`input_size_of`, else 224 px) is run through the model in eval mode without gradients
    (the model is left exactly as it was). The ``(B, C, h, w)`` outputs of its submodules are
    split into runs of one map size (a stage), and each stage gives its last output that is an
    activation's output (``nn.ReLU``, ``GELU``, ... or a block/stage whose output it is):
    torchvision's resnet18 gives ``relu, layer1, layer2, layer3, layer4``; a ``Sequential`` of
    conv, ReLU and pooling layers gives its ReLUs; never a pre-activation convolution, nor the
    logits. Maps of 1x1 (global pooling) are left out. A name is the outermost module that
    outputs that tensor and runs once per forward.

    A stage without an activation is left out; only a model without any activation module
    (e.g. ``F.relu`` in ``forward``) gives each stage's last output, unless
    ``require_activation`` (then ``[]``). A forward that fails part way (a head
    sized for another input) keeps the stages seen before; ``[]`` when there are none.
    """
    example = getattr(model, "example_input_array", None)
    if input_size is not None or not isinstance(example, torch.Tensor) or example.ndim != 4:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        size = tuple(input_size) if input_size is not None else (input_size_of(model) or (224, 224))
        channels = in_channels or expected_in_channels(model) or 3
        example = torch.zeros(1, channels, int(size[-2]), int(size[-1]))
    example = example[:1].to(model_device(model), model_dtype(model))
    records: list[tuple[str, torch.Tensor]] = []
    calls: dict[str, int] = {}
    activations: set[int] = set()

    def hook(name: str, module: nn.Module):
        def record(_: nn.Module, __: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                records.append((name, output))
                if is_activation(module):
                    activations.add(id(output))

        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m in model.named_modules() if n]
    try:
        with frozen_eval(model, eval_mode=True, freeze_params=False), torch.no_grad():
            model(example)
    except Exception:  # noqa: BLE001 - a probe: the stages seen before the failure are enough
        pass
    finally:
        for handle in handles:
            handle.remove()
    runs: list[list[tuple[str, torch.Tensor]]] = []
    for name, output in records:
        size = tuple(output.shape[-2:])
        if runs and tuple(runs[-1][-1][1].shape[-2:]) == size:
            runs[-1].append((name, output))
        else:
            runs.append([(name, output)])
    stages: list[tuple[str, tuple[int, int]]] = []
    require_activation = require_activation or bool(activations)
    for run in runs:
        h, w = (int(v) for v in run[-1][1].shape[-2:])
        if h * w <= 1:
            continue
        after = [(n, o) for n, o in run if id(o) in activations]
        if not after and require_activation:
            continue
        tensor = (after or run)[-1][1]
        same = [n for n, o in run if o is tensor]
        once = [n for n in same if calls.get(n) == 1]
        stages.append(((once or same)[-1], (h, w)))
    return stages
