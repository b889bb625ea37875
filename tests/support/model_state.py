"""Snapshots of a model's state (modes, requires_grad, .grad identity) to check it is left as found."""

from __future__ import annotations

import torch

__all__ = ["_assert_same", "_messy", "_snapshot"]


def _messy(model: torch.nn.Module) -> torch.nn.Module:
    """Training mode in part, some frozen parameters, some .grad tensors, one hook."""
    model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[1].grad = torch.ones_like(params[1])
    params[-1].grad = torch.full_like(params[-1], 3.0)
    for module in list(model.modules())[1:2]:
        module.eval()
    model.register_forward_hook(lambda m, i, o: None)
    return model


def _snapshot(model: torch.nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad_ids": [id(p.grad) if p.grad is not None else None for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()
        ],
        "device": [p.device for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["grad_ids"] == after["grad_ids"]
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert before["hooks"] == after["hooks"]
    assert before["device"] == after["device"]
    assert torch.equal(before["rng"], after["rng"])
