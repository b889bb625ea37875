"""The model is left exactly as it was: flags, requires_grad, .grad, hooks, RNG, device; also on error."""

from __future__ import annotations

import pytest
import torch
from tests.support.tiny_models import tiny_cnn

from interpret import get_explainer
from tests.support.model_state import _assert_same, _messy, _snapshot

CNN_METHODS = [
    ("gradcam", {}),
    ("gradcam++", {}),
    ("integrated_gradients", {"steps": 4}),
    ("smoothgrad", {"num_samples": 3}),
    ("saliency", {}),
]
VIT_METHODS = [("attention_rollout", {}), ("attention_flow", {}), ("gradcam", {})]


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
