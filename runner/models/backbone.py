"""timm backbones by name, and the one path that loads ``model.weights_path`` into a model.

``model.pretrained`` + ``model.weights_path`` name a local file (weights are never downloaded):

- a timm/torchvision-style state dict (``.pth``/``.bin``/``.safetensors``, e.g. ImageNet weights) goes
  through timm's own pretrained path (``pretrained_cfg_overlay=dict(file=...)``), which drops a
  classifier head of another size, resamples ViT position embeddings and adapts ``in_chans``;
- a Lightning checkpoint of this project (``.ckpt``) is loaded tensor by tensor with its module
  prefix stripped (``backbone.*`` of a classifier, ``detector.*`` of a detector, see
  :func:`checkpoint_task`); a head of another size is left freshly initialised.

The classifier and the detector both load through :func:`create_backbone` and
:func:`load_prefixed_weights`.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from runner.paths import resolve_user_path

__all__ = [
    "CHECKPOINT_PREFIXES",
    "accepts_img_size",
    "backbone_from_state",
    "check_backbone_name",
    "checkpoint_task",
    "create_backbone",
    "load_prefixed_weights",
    "plain",
    "read_weights",
]

log = logging.getLogger(__name__)

#: the module prefix of each task's weights inside a checkpoint of this project
CHECKPOINT_PREFIXES: dict[str, str] = {"classification": "backbone.", "detection": "detector."}


@functools.lru_cache(maxsize=1)
def _timm_model_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def check_backbone_name(name: str) -> None:
    """Raise a ValueError naming ``model.backbone`` and the closest timm names unless timm knows ``name``."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, _timm_model_names(), n=5, cutoff=0.6)
        hint = f" Closest timm names: {', '.join(close)}." if close else " See timm.list_models()."
        raise ValueError(f"model.backbone: unknown timm model {name!r}.{hint}")


def read_weights(weights_path: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The resolved path and the state dict of a weights file (a Lightning checkpoint's ``state_dict``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable state dict or checkpoint.
    """
    path = resolve_user_path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights_path: no such file {str(path)!r}")
    try:
        if path.suffix == ".ckpt":  # this project's Lightning checkpoints (they also hold callback states)
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), Mapping):
                return path, dict(checkpoint["state_dict"])
        state = timm.models.load_state_dict(str(path))
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"model.weights_path: {str(path)!r} is not a readable state dict or checkpoint: {err}") from err
    return path, state


def checkpoint_task(state: Mapping[str, Any]) -> str | None:
    """The task of the model a state dict of this project comes from (its key prefix), or None (a timm file)."""
    for task, prefix in CHECKPOINT_PREFIXES.items():
        if any(str(k).startswith(prefix) for k in state):
            return task
    return None


def create_backbone(
    name: str, num_classes: int, pretrained: bool = False, weights_path: str | None = None, **kwargs: Any
) -> nn.Module:
    """Create a timm model by name, never downloading weights; ``weights_path`` loads a local file.

    How many tensors were loaded is logged; a file of which nothing matches the model is an error.

    Args:
        name: a timm model name, e.g. ``resnet18`` or ``vit_tiny_patch16_224``.
        num_classes: size of the classification head.
        pretrained: must stay False unless ``weights_path`` is given (no network at run time).
        weights_path: optional local weights file (see the module docstring).
        **kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for ViTs, ``drop_rate``, ``in_chans``).

    Raises:
        ValueError: unknown model name (with the closest timm names), ``pretrained`` without a file, or a
            weights file that does not fit the model.
    """
    check_backbone_name(name)
    if pretrained and not weights_path:
        raise ValueError(
            "model.pretrained=true needs model.weights_path (a local file): weights are never downloaded."
        )
    if not weights_path:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return backbone_from_state(name, num_classes, *read_weights(weights_path), **kwargs)


def backbone_from_state(
    name: str, num_classes: int, path: Path, state: Mapping[str, torch.Tensor], **kwargs: Any
) -> nn.Module:
    """A timm model with the weights of ``state`` (read from ``path`` by :func:`read_weights`).

    Raises:
        ValueError: unknown model name, or weights that do not fit the model.
    """
    check_backbone_name(name)
    if checkpoint_task(state) == "classification":
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        loaded = load_prefixed_weights(
            model, state, CHECKPOINT_PREFIXES["classification"], path, head=_classifier_prefixes(model),
            hint="same model.backbone and model.in_chans as the checkpoint?",
        )
    else:
        overlay: dict[str, Any] = {"file": str(path)}
        head = _file_head_size(name, state)
        if head is not None:  # timm keeps the file's head when it has the size asked for
            overlay["num_classes"] = head
        try:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes, **kwargs
            )
        except RuntimeError as err:
            raise ValueError(f"model.weights_path: {str(path)!r} does not fit timm model {name!r}: {err}") from err
        loaded = _count_loaded(model, state)
    total = len(model.state_dict())
    if loaded == 0:
        raise ValueError(
            f"model.weights_path: none of the {len(state)} tensors in {str(path)!r} matches timm model {name!r} "
            f"(model keys look like {', '.join(list(model.state_dict())[:3])})"
        )
    log.info(f"Loaded {loaded} of {total} tensors of {name} from {path}")
    return model


def load_prefixed_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    prefix: str,
    path: Path,
    head: tuple[str, ...],
    hint: str,
) -> int:
    """Load the ``prefix``-ed tensors of a checkpoint of this project into ``model``; return how many.

    The prefix is stripped (and ``_orig_mod.`` of a ``torch.compile``'d module); tensors the model does
    not have are ignored; a tensor under one of the ``head`` prefixes with another shape (another
    number of classes) stays freshly initialised.

    Raises:
        ValueError: a tensor outside the head has another shape (``hint`` says what to check).
    """
    own = model.state_dict()
    weights: dict[str, torch.Tensor] = {}
    skipped = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):].removeprefix("_orig_mod.")  # torch.compile'd backbones
        if name not in own:
            continue
        if own[name].shape != value.shape:
            if name.startswith(head):
                skipped.append(name)
                continue
            raise ValueError(
                f"model.weights_path: {name} has shape {tuple(value.shape)} in {str(path)!r} but "
                f"{tuple(own[name].shape)} in the model ({hint})"
            )
        weights[name] = value
    if skipped:
        log.info(f"Not loading the head from {path} (another number of classes): {', '.join(skipped)}")
    model.load_state_dict(weights, strict=False)
    return len(weights)


def _file_head_size(name: str, state: Mapping[str, Any]) -> int | None:
    """Rows of the classifier weight in a timm state dict (its number of classes), if it has one."""
    try:
        classifier = timm.models.get_pretrained_cfg_value(name, "classifier")
    except Exception:  # noqa: BLE001 - a model without a pretrained config
        return None
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    for head in names:
        weight = state.get(f"{head}.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


def _count_loaded(model: nn.Module, state: Mapping[str, torch.Tensor]) -> int:
    """Tensors of ``model`` that came from ``state``: equal values, or adapted/resampled (not the head)."""
    head = _classifier_prefixes(model)
    count = 0
    for name, tensor in model.state_dict().items():
        source = state.get(name)
        if not isinstance(source, torch.Tensor):
            continue
        if source.shape == tensor.shape:
            count += int(torch.equal(source.to(tensor.dtype), tensor))
        elif not name.startswith(head):
            count += 1  # resampled position embeddings, adapted input convolution
    return count


def accepts_img_size(name: str) -> bool:
    """Whether a timm architecture takes ``img_size`` (ViT-like models with a fixed patch grid)."""
    entry = timm.models.get_arch_name(name)
    return entry.startswith(("vit", "deit", "beit", "eva", "swin", "cait", "xcit", "levit", "pit", "mvit", "flexivit"))


def plain(value: Any) -> Any:
    """Config containers (e.g. omegaconf's DictConfig) -> plain dicts/lists, recursively.

    Hyperparameters are kept plain so checkpoints load with ``torch.load(weights_only=True)``.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [plain(v) for v in value]
    return value
