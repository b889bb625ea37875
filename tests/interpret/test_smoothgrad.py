"""SmoothGrad against an unbatched hand-written reference with the same noise."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.attr import Saliency as CaptumSaliency

from interpret import GradCAM, IntegratedGradients, Saliency, SmoothGrad


def _reference(model, x, target, noise_level, num_samples, seed) -> torch.Tensor:
    """One image at a time, one noisy copy at a time, the same generator sequence."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    noises = [torch.randn((x.shape[0] * num_samples, *x.shape[1:]), generator=generator)]
    noise = torch.cat(noises)
    for b in range(x.shape[0]):
        sigma = noise_level * (x[b].max() - x[b].min())
        total = torch.zeros_like(x[b])
        for i in range(num_samples):
            noisy = (x[b] + sigma * noise[b * num_samples + i]).unsqueeze(0).requires_grad_(True)
            score = model(noisy)[0, target[b]]
            (grad,) = torch.autograd.grad(score, noisy)
            total += grad[0].abs()
        out.append(total / num_samples)
    return torch.stack(out)


def test_matches_unbatched_reference(cnn) -> None:
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    explainer = SmoothGrad(Saliency(cnn), noise_level=0.2, num_samples=7, internal_batch_size=5, seed=11)
    got = explainer.attribute(x, target_class=[1, 2])
    expected = _reference(cnn, x, [1, 2], 0.2, 7, 11)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_zero_noise_equals_base(cnn) -> None:
    x = torch.randn(2, 3, 12, 12)
    base = Saliency(cnn)
    torch.testing.assert_close(SmoothGrad(base, noise_level=0.0, num_samples=3).explain(x), base.explain(x))


def test_nonlinear_model_matches_captum_noise_tunnel_with_the_same_noise(cnn) -> None:
    """A ReLU/BatchNorm/max-pool net, where noise changes the gradient; captum draws its noise from
    the global RNG seeded with our seed, at the same absolute sigma (ours: noise_level * range)."""
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    noise_level, samples, seed = 0.2, 16, 7
    ours = SmoothGrad(
        Saliency(cnn), noise_level=noise_level, num_samples=samples, internal_batch_size=samples, seed=seed
    ).attribute(x, target_class=[2])
    sigma = float(noise_level * (x.max() - x.min()))
    torch.manual_seed(seed)
    reference = NoiseTunnel(CaptumSaliency(cnn)).attribute(
        x, nt_type="smoothgrad", nt_samples=samples, stdevs=sigma, target=[2], abs=True
    )
    cnn.zero_grad(set_to_none=True)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)
    # the noise matters on this model: the plain gradient is far from the average
    plain = Saliency(cnn).attribute(x, target_class=[2])
    assert (plain - ours).abs().max() > 0.05 * ours.abs().max()


def test_global_rng_untouched_and_deterministic(cnn) -> None:
    x = torch.randn(1, 3, 12, 12)
    state = torch.get_rng_state()
    a = SmoothGrad(Saliency(cnn), num_samples=4).explain(x)
    b = SmoothGrad(Saliency(cnn), num_samples=4).explain(x)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a, b)


def test_wraps_gradcam_and_integrated_gradients(cnn) -> None:
    x = torch.randn(2, 3, 12, 12)
    for base in (GradCAM(cnn), IntegratedGradients(cnn, steps=4)):
        maps = SmoothGrad(base, num_samples=3).explain(x, target_class=0)
        assert maps.shape == (2, 12, 12)
        assert float(maps.max()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"noise_level": -0.1}, "noise_level must be"), ({"num_samples": 0}, "num_samples must be")],
)
def test_bad_arguments(cnn, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SmoothGrad(Saliency(cnn), **kwargs)
    with pytest.raises(ValueError, match="base_explainer must be an interpret Explainer"):
        SmoothGrad(cnn)
