"""The model is left exactly as it was: flags, requires_grad, .grad, hooks, RNG, device; also on error."""

from __future__ import annotations

import pytest
import torch
from tests.support.tiny_models import tiny_cnn

from interpret import get_explainer

CNN_METHODS = [
    ("gradcam", {}),
    ("gradcam++", {}),
    ("integrated_gradients", {"steps": 4}),
    ("smoothgrad", {"num_samples": 3}),
    ("saliency", {}),
]
VIT_METHODS = [("attention_rollout", {}), ("attention_flow", {}), ("gradcam", {})]


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


@pytest.mark.parametrize(("method", "kwargs"), CNN_METHODS)
@pytest.mark.parametrize("mode", ["plain", "no_grad", "inference_mode"])
def test_cnn_state_restored_in_every_grad_mode(method, kwargs, mode) -> None:
    torch.manual_seed(0)
    model = _messy(tiny_cnn())
    x = torch.randn(2, 3, 12, 12)
    before = _snapshot(model)
    explainer = get_explainer(method, model, **kwargs)
    if mode == "no_grad":
        with torch.no_grad():
            maps = explainer.explain(x)
    elif mode == "inference_mode":
        with torch.inference_mode():
            x = x.clone()  # an inference tensor
            maps = explainer.explain(x)
    else:
        maps = explainer.explain(x)
    assert maps.shape == (2, 12, 12)
    assert float(maps.max()) <= 1.0
    _assert_same(before, _snapshot(model))
    assert torch.is_grad_enabled()


@pytest.mark.parametrize(("method", "kwargs"), VIT_METHODS)
def test_vit_state_restored_under_inference_mode(vit, method, kwargs) -> None:
    _messy(vit)
    x = torch.randn(1, 3, 32, 32)
    before = _snapshot(vit)
    try:
        with torch.inference_mode():
            maps = get_explainer(method, vit, **kwargs).explain(x)
        assert maps.shape == (1, 32, 32)
        _assert_same(before, _snapshot(vit))
    finally:
        vit.eval()
        for p in vit.parameters():
            p.requires_grad_(True)
            p.grad = None


@pytest.mark.parametrize(("method", "kwargs"), CNN_METHODS)
def test_state_restored_after_an_exception(method, kwargs) -> None:
    torch.manual_seed(0)
    model = _messy(tiny_cnn())
    x = torch.randn(2, 3, 12, 12)
    before = _snapshot(model)
    explainer = get_explainer(method, model, **kwargs)
    with pytest.raises(ValueError, match="out of range"):
        explainer.explain(x, target_class=17)
    _assert_same(before, _snapshot(model))


class _Exploding(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_cnn()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom inside forward")
        return self.net(x)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "saliency"])
def test_exception_inside_forward_propagates_and_hooks_are_removed(method) -> None:
    model = _Exploding()
    model.calls = 1  # the next forward raises
    x = torch.randn(1, 3, 12, 12)
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        get_explainer(method, model).explain(x)
    _assert_same(before, _snapshot(model))


def test_explainers_do_not_disturb_a_seeded_training_step() -> None:
    """A training step after an explanation is bit-identical to one without."""

    def run(explain: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = tiny_cnn()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(4, 3, 12, 12)
        if explain:
            get_explainer("smoothgrad", model, num_samples=2).explain(x)
            get_explainer("integrated_gradients", model, baseline="random", steps=2).explain(x)
        loss = torch.nn.functional.cross_entropy(model(x + torch.randn_like(x)), torch.tensor([0, 1, 2, 3]))
        loss.backward()
        opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(False), run(True))
