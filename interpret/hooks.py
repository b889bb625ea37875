"""Hooks that are always removed: a context manager around ``register_*_hook``.

Explainers capture activations with forward hooks. Every handle goes through :class:`HookManager`,
whose ``__exit__`` removes all of them on success and on exception alike, and never swallows the
exception (it returns ``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["ActivationCapture", "HookManager"]


class HookManager:
    """Register hooks on modules and remove them all when the ``with`` block ends.

    Example:
        >>> with HookManager() as hooks:
        ...     hooks.register_forward_hook(model.layer4, fn)
        ...     model(x)
        # every hook is gone here, also if ``model(x)`` raised
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def register_forward_hook(self, module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        """Register ``hook`` as a forward hook of ``module`` for the life of this manager."""
        handle = module.register_forward_hook(hook)
        self._handles.append(handle)
        return handle

    def register_forward_pre_hook(self, module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        """Register ``hook`` as a forward pre-hook of ``module`` for the life of this manager."""
        handle = module.register_forward_pre_hook(hook)
        self._handles.append(handle)
        return handle

    def register_tensor_hook(self, tensor: torch.Tensor, hook: Callable[[torch.Tensor], Any]) -> RemovableHandle:
        """Register a gradient hook on ``tensor`` for the life of this manager."""
        handle = tensor.register_hook(hook)
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        """Remove every hook registered so far (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> HookManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returning None lets any exception propagate unchanged.
        self.remove()


class ActivationCapture:
    """Capture the output of one module during a forward pass, as a leaf that requires grad.

    The module's output is replaced by ``leaf.clone()`` where ``leaf = output.detach().requires_grad_()``.
    Gradients of anything computed after the module can then be taken w.r.t. ``leaf`` with
    ``torch.autograd.grad``, and no graph at all is built below the module (when the input and the
    parameters do not require grad): the backward pass stops at the layer. The clone keeps
    later in-place operations (e.g. ``x += shortcut``) legal.

    Only the first call of the module in a forward pass is captured; later calls pass through.
    For a module returning a tuple or list, its first tensor is captured.
    """

    def __init__(self) -> None:
        self.activation: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the captured activation."""
        self.activation = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if self.activation is not None:
            return None
        if isinstance(output, torch.Tensor):
            self.activation = output.detach().requires_grad_(True)
            return self.activation.clone()
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            self.activation = output[0].detach().requires_grad_(True)
            replaced = [self.activation.clone(), *output[1:]]
            if isinstance(output, list):
                return replaced
            if hasattr(output, "_fields"):  # a namedtuple
                return type(output)(*replaced)
            return tuple(replaced)
        raise TypeError(
            f"the target layer {type(module).__name__} returned {type(output).__name__}; "
            "expected a tensor (or a tuple whose first element is a tensor)"
        )
