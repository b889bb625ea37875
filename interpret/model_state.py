"""Leave the model as it was: guards for explaining in the middle of training.

An explanation must leave the model exactly as it found it. :func:`frozen_eval` saves and
restores every module's ``training`` flag and every parameter's ``requires_grad`` and ``.grad``
(the very same tensor object, or None), also when the explanation raises; :func:`local_grad`
turns gradients on inside ``torch.no_grad()`` or ``torch.inference_mode()``;
:func:`preserve_rng_and_modes` adds the torch/numpy/python RNG states for use during training.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["frozen_eval", "local_grad", "preserve_model_state", "preserve_rng_and_modes"]


@contextlib.contextmanager
def frozen_eval(model: nn.Module, eval_mode: bool = True, freeze_params: bool = True) -> Iterator[None]:
    """Run a block with the model in eval mode and its parameters frozen, then restore it exactly.

    This is what an explanation needs (no BatchNorm updates, no weight gradients). It does not
    touch random number generators; :func:`preserve_rng_and_modes` adds those for use in the
    middle of training. ``preserve_model_state`` is the former name.

    Saved and restored: each module's ``training`` flag, each parameter's ``requires_grad`` and
    its ``.grad`` (the same tensor object, or None). Restoration happens on success and on
    exception; the exception propagates.

    Args:
        model: the model to protect.
        eval_mode: put the model in eval mode inside the block.
        freeze_params: set ``requires_grad=False`` on every parameter inside the block, so that
            backward passes compute no weight gradients and touch no ``.grad``.
    """
    training = [(module, module.training) for module in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        if freeze_params:
            for p, _, _ in params:
                p.requires_grad_(False)
        yield
    finally:
        for module, flag in training:
            module.training = flag
        for p, requires_grad, grad in params:
            p.requires_grad_(requires_grad)
            p.grad = grad


#: the former name of :func:`frozen_eval`
preserve_model_state = frozen_eval


@contextlib.contextmanager
def local_grad() -> Iterator[None]:
    """Enable autograd inside the block, also under ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def preserve_rng_and_modes(model: nn.Module) -> Iterator[None]:
    """Run a block in the middle of training, then put back everything it may change.

    Restored on success and on exception: every module's ``training`` flag, every parameter's
    ``requires_grad`` and ``.grad`` (the same tensor object), and the torch (CPU and CUDA), numpy
    and python RNG states. The model is in eval mode inside the block; parameters are not frozen
    here (the explainer freezes them itself with :func:`frozen_eval`).
    """
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    np_rng = np.random.get_state()
    py_rng = random.getstate()
    try:
        with frozen_eval(model, eval_mode=True, freeze_params=False):
            yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
