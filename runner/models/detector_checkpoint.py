"""A checkpoint of this project's detector -> the module, for ``interpret``'s checkpoint loaders.

``interpret`` imports nothing from ``runner/``; it finds loaders through the entry point group
``interpret.checkpoint_loaders`` (pyproject.toml: ``vision-runner =
"runner.models.detector_checkpoint:load_detector_checkpoint"``) and tries each in turn, so a loader
raises ``ValueError`` (or ``TypeError``) naming the path for a file that is not its kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from runner.models.backbone import checkpoint_task
from runner.models.detector import ObjectDetector
from runner.paths import resolve_user_path

__all__ = ["load_detector_checkpoint"]


def load_detector_checkpoint(path: str | Path) -> nn.Module:
    """Load a ``.ckpt`` of :class:`~runner.models.ObjectDetector` onto the CPU, in eval mode.

    Args:
        path: the checkpoint file (``~`` and paths relative to the launch directory work).

    Returns:
        The :class:`~runner.models.ObjectDetector` (its torchvision detector at ``.detector``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a ``.ckpt``, not readable, or not a checkpoint of this project's detector.
    """
    resolved = resolve_user_path(path)
    if not resolved.is_file():
        raise FileNotFoundError(f"model: no such checkpoint file {str(resolved)!r}")
    if resolved.suffix != ".ckpt":
        raise ValueError(
            f"model: a path must be a .ckpt checkpoint of runner.models.ObjectDetector, got {str(resolved)!r}; "
            "for a torchvision state dict build the detector and call load_state_dict yourself"
        )
    try:
        checkpoint = torch.load(resolved, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"model: {str(resolved)!r} is not a readable checkpoint: {err}") from err
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or checkpoint_task(state) != "detection":
        raise ValueError(
            f"model: {str(resolved)!r} is not a checkpoint of runner.models.ObjectDetector "
            "(its state_dict has no detector.* tensors)"
        )
    # the weights come from the checkpoint: the backbone file it was first built from is not needed
    model = ObjectDetector.load_from_checkpoint(str(resolved), map_location="cpu", pretrained=False, weights_path=None)
    return model.eval()
