"""Facts about a model or one of its modules: its device, dtype, input channels, whether a module is an activation.

Small lookups :mod:`interpret.layers` (layer choice, the size probe) and the methods share; re-exported there.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["expected_in_channels", "is_activation", "model_device", "model_dtype"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter; float32 otherwise."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def expected_in_channels(model: nn.Module) -> int | None:
    """The number of input channels the model expects (its first ``nn.Conv2d``), or None."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


#: activation modules of torch.nn.modules.activation that are no elementwise activation
_NOT_ACTIVATIONS = frozenset({"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d", "Threshold"})
_ACTIVATION_WORDS = ("relu", "gelu", "silu", "swish", "mish", "elu", "sigmoid", "tanh", "softplus", "hardswish")


def is_activation(module: nn.Module) -> bool:
    cls = type(module)
    if cls.__module__ == "torch.nn.modules.activation":
        return cls.__name__ not in _NOT_ACTIVATIONS
    name = cls.__name__.lower()
    return not list(module.children()) and any(word in name for word in _ACTIVATION_WORDS)
