"""Integrated Gradients: completeness, captum agreement, baselines, flat batching."""

from __future__ import annotations

import pytest
import timm
import torch
from captum.attr import IntegratedGradients as CaptumIG

from tests.support.tiny_models import randomize_batchnorm

from interpret import IntegratedGradients
from interpret.methods.integrated_gradients import gaussian_blur, quadrature


MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)


def _black(x: torch.Tensor) -> torch.Tensor:
    """A black image in the space of inputs normalised with MEAN/STD, written out by hand."""
    return ((0.0 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand_as(x).clone()


def _completeness_errors(model, x, method="gausslegendre", steps=50):
    """|sum(IG) - (f(x) - f(black))| / |f(x) - f(black)|, the gap computed here, not by the explainer."""
    ig = IntegratedGradients(
        model, baseline="black", steps=steps, internal_batch_size=50, method=method, mean=MEAN, std=STD
    )
    with torch.no_grad():
        gaps = model(x) - model(_black(x))
    targets = gaps.abs().argmax(1)
    gap = gaps[torch.arange(x.shape[0]), targets]
    attributions = ig.attribute(x, target_class=targets)
    sums = attributions.flatten(1).sum(1)
    return ((sums - gap).abs() / gap.abs()), ig, targets, gap


def test_completeness_within_one_percent_on_nonlinear_resnet() -> None:
    """resnet18 with SiLU, random BN statistics, affine parameters and biases, 32 px."""
    torch.manual_seed(0)
    model = randomize_batchnorm(timm.create_model("resnet18", pretrained=False, num_classes=5, act_layer="silu"))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    errors, ig, targets, gap = _completeness_errors(model.eval(), x)
    assert errors.max() < 0.01
    # the check has teeth: a right Riemann sum that drops the alpha=0 end misses by > 1% here
    baseline = _black(x)
    total = torch.zeros_like(x)
    for k in range(1, 51):
        scaled = (baseline + k / 50 * (x - baseline)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(scaled)[torch.arange(2), targets].sum(), scaled)
        total += grad / 50
    right = ((x - baseline) * total).flatten(1).sum(1)
    assert ((right - gap).abs() / gap.abs()).max() > 0.01


@pytest.mark.slow
def test_completeness_on_relu_resnet_at_224() -> None:
    """The ReLU resnet18 of the benchmark, random BN statistics and biases, at 224 px."""
    torch.manual_seed(0)
    model = randomize_batchnorm(timm.create_model("resnet18", pretrained=False, num_classes=5)).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    errors, *_ = _completeness_errors(model, x)
    assert errors.max() < 0.01


def test_convergence_delta_is_the_independent_gap() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(timm.create_model("resnet18", pretrained=False, num_classes=5, act_layer="silu")).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ig = IntegratedGradients(model, baseline="black", steps=8, mean=MEAN, std=STD)
    attributions, delta = ig.attribute(x, target_class=[1, 2], return_convergence_delta=True)
    with torch.no_grad():
        gap = (model(x) - model(_black(x)))[torch.arange(2), torch.tensor([1, 2])]
    torch.testing.assert_close(delta, attributions.flatten(1).sum(1) - gap, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_matches_captum(resnet, method) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    baseline = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.1
    ours = IntegratedGradients(resnet, baseline=baseline, steps=20, internal_batch_size=16, method=method).attribute(
        x, target_class=[0, 4]
    )
    reference = CaptumIG(resnet).attribute(
        x, baselines=baseline.unsqueeze(0).expand_as(x), target=[0, 4], n_steps=20, method=method,
        internal_batch_size=16,
    )
    resnet.zero_grad(set_to_none=True)
    torch.testing.assert_close(ours, reference.detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 7, 200])
def test_internal_batch_size_does_not_change_the_result(cnn, chunk) -> None:
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    reference = IntegratedGradients(cnn, steps=10, internal_batch_size=30).attribute(x, target_class=2)
    got = IntegratedGradients(cnn, steps=10, internal_batch_size=chunk).attribute(x, target_class=2)
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)


def test_internal_batch_size_bounds_each_forward(cnn) -> None:
    sizes: list[int] = []
    handle = cnn.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        IntegratedGradients(cnn, steps=50, internal_batch_size=32).explain(torch.randn(4, 3, 16, 16), target_class=0)
    finally:
        handle.remove()
    assert max(sizes) == 32
    assert sum(sizes) == 4 * 50


def test_pixel_space_baselines_follow_the_model_normalisation(cnn) -> None:
    x = torch.zeros(1, 3, 8, 8)
    ig = IntegratedGradients(cnn, baseline="black", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.testing.assert_close(ig.make_baseline(x), torch.full_like(x, -2.0))
    white = IntegratedGradients(cnn, baseline="white", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.testing.assert_close(white.make_baseline(x), torch.full_like(x, 2.0))
    # a plain nn.Module has no data config: pixel space is model space
    torch.testing.assert_close(IntegratedGradients(cnn).make_baseline(x), x)


def test_timm_data_config_is_used(resnet) -> None:
    baseline = IntegratedGradients(resnet, baseline="black").make_baseline(torch.zeros(1, 3, 4, 4))
    expected = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(baseline[0, :, 0, 0], expected)


def test_random_baseline_is_seeded_and_leaves_global_rng_alone(cnn) -> None:
    x = torch.zeros(2, 3, 8, 8)
    state = torch.get_rng_state()
    a = IntegratedGradients(cnn, baseline="random", seed=3).make_baseline(x)
    b = IntegratedGradients(cnn, baseline="random", seed=3).make_baseline(x)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a, b)
    assert a.std() > 0.1


def test_blur_baseline_keeps_mean_and_smooths() -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blurred = gaussian_blur(x, 2.0)
    assert blurred.shape == x.shape
    assert blurred.std() < 0.5 * x.std()
    constant = torch.full((1, 1, 5, 5), 3.0)
    torch.testing.assert_close(gaussian_blur(constant, 4.0), constant)


def test_quadrature_weights_integrate_polynomials() -> None:
    nodes, weights = quadrature(5)
    assert weights.sum() == pytest.approx(1.0)
    assert (weights * nodes**9).sum() == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"baseline": "grey"}, "baseline can be black, white, blur, random"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"internal_batch_size": -1}, "internal_batch_size must be an int >= 1"),
        ({"method": "trapezoid"}, "method can be gausslegendre, riemann_middle"),
        ({"baseline": torch.zeros(8, 8)}, "a tensor baseline must be"),
    ],
)
def test_bad_arguments(cnn, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        IntegratedGradients(cnn, **kwargs)


def test_mismatched_tensor_baseline(cnn) -> None:
    ig = IntegratedGradients(cnn, baseline=torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="does not match the input"):
        ig.explain(torch.randn(3, 8, 8))
