"""timm backbones by name: pretrained weights from the Hugging Face hub, or ``model.weights_path``.

``model.pretrained=true`` without ``model.weights_path`` goes through timm's own pretrained path
(``timm.create_model(name, pretrained=True)``): the weights of the name's pretrained tag
(``resnet50`` = its default tag, or ``resnet50.a1_in1k``) come from the Hugging Face hub repo
``timm/<name>.<tag>`` and are cached under ``HF_HOME`` (``$HF_HOME/hub/models--timm--<tag>/``), so a
second run needs no network and ``HF_HUB_OFFLINE=1`` runs from the cache; weights neither cached nor
reachable are one error naming the tag, the repo and the ways out (:func:`pretrained_from_hub`).

``model.pretrained`` + ``model.weights_path`` name a local file (nothing is downloaded):

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
    "pretrained_from_hub",
    "read_weights",
]

log = logging.getLogger(__name__)

#: the module prefix of each task's weights inside a checkpoint of this project
CHECKPOINT_PREFIXES: dict[str, str] = {"classification": "backbone.", "detection": "detector."}


@functools.lru_cache(maxsize=1)
def _timm_model_names() -> tuple[str, ...]:
    """Every timm architecture name and every tagged name with pretrained weights (``resnet50.a1_in1k``)."""
    return tuple(timm.list_models()) + tuple(timm.list_pretrained())


def check_backbone_name(name: str) -> None:
    """Raise a ValueError naming ``model.backbone`` unless timm knows ``name``, with or without a pretrained tag.

    The message lists the closest timm names (tagged ones too), or the tags of the architecture when
    only the tag is unknown.
    """
    arch, _, tag = name.partition(".")
    if timm.is_model(arch) and (not tag or name in timm.list_pretrained(f"{arch}.*")):
        return
    if timm.is_model(arch):
        tags = timm.list_pretrained(f"{arch}.*")
        known = f"its tags: {', '.join(tags)}" if tags else "it has no pretrained weights in timm"
        raise ValueError(f"model.backbone: timm has no pretrained tag {tag!r} for {arch!r}; {known}.")
    close = difflib.get_close_matches(name, _timm_model_names(), n=5, cutoff=0.6)
    hint = (f" Closest timm names: {', '.join(close)}." if close
            else " See timm.list_models() and timm.list_pretrained().")
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
    """Create a timm model by name: random, pretrained from the hub (cached), or from a local weights file.

    How many tensors were loaded is logged; a file of which nothing matches the model is an error.

    Args:
        name: a timm model name with or without a pretrained tag, e.g. ``resnet18``,
            ``resnet18.a1_in1k`` or ``vit_tiny_patch16_224``.
        num_classes: size of the classification head (a pretrained head of another size is replaced).
        pretrained: load pretrained weights: from ``weights_path`` when given, else from the Hugging
            Face hub through timm (see :func:`pretrained_from_hub`).
        weights_path: optional local weights file (see the module docstring).
        **kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for ViTs, ``drop_rate``, ``in_chans``).

    Raises:
        ValueError: unknown model name or tag (with the closest timm names), or a weights file that
            does not fit the model.
        FileNotFoundError: hub weights that are neither cached nor reachable (one line: the tag, the
            repo, the three ways out).
    """
    check_backbone_name(name)
    if pretrained and not weights_path:
        return pretrained_from_hub(name, num_classes, **kwargs)
    if not weights_path:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return backbone_from_state(name, num_classes, *read_weights(weights_path), **kwargs)


def pretrained_from_hub(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=True, ...)``: the weights of ``name``'s tag from the Hugging Face hub.

    huggingface_hub caches them under ``HF_HOME`` (``hub/models--timm--<arch>.<tag>/``) and reads that
    cache first; with ``HF_HUB_OFFLINE=1`` it reads only the cache. The pretrained config of the weights
    (mean, std, input size, crop_pct, interpolation) is logged: the model's ``data_config`` comes from it.

    Raises:
        ValueError: timm has no pretrained weights for ``name``.
        FileNotFoundError: the weights are not cached and the hub cannot be reached, in one line naming
            the tag, the repo and the ways out (connect once, copy the cache, ``model.weights_path``).
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tagged = timm.list_pretrained(f"{name.partition('.')[0]}.*")
        raise ValueError(
            f"model.pretrained=true: timm has no pretrained weights for {name!r}"
            + (f"; tagged names with weights: {', '.join(tagged)}" if tagged else "")
            + "; set model.pretrained=false or give model.weights_path"
        )
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)
    source = f"Hugging Face hub repo {cfg.hf_hub_id}" if cfg.hf_hub_id else f"{cfg.url}"
    try:
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    except LocalEntryNotFoundError as err:
        offline = " (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else ""
        cache = constants.HF_HUB_CACHE
        folder = f"models--{cfg.hf_hub_id.replace('/', '--')}" if cfg.hf_hub_id else "the weights"
        raise FileNotFoundError(
            f"model.pretrained=true: the weights {tag} ({source}) are not in the cache {cache} and the hub "
            f"cannot be reached{offline}. Either connect once (the first run caches them), or copy a cache "
            f"holding {folder} into {cache} (HF_HOME), or set model.weights_path=<a local weights file>."
        ) from err
    data = model.pretrained_cfg
    log.info(
        f"Loaded pretrained weights {tag} from the {source} (cache {constants.HF_HUB_CACHE}); "
        + (f"head: new, {num_classes} classes; " if num_classes else "")
        + f"pretrained config: mean={data.get('mean')}, std={data.get('std')}, "
        f"input_size={data.get('input_size')}, crop_pct={data.get('crop_pct')}, "
        f"interpolation={data.get('interpolation')}"
    )
    return model


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
