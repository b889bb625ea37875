"""Integrated Gradients (Sundararajan et al. 2017).

``IG_i(x) = (x_i - x'_i) * integral_0^1 dS(x' + a (x - x'))/dx_i da``, computed with a
Gauss-Legendre quadrature of ``steps`` nodes on [0, 1] (the default; ``"riemann_middle"`` is the
midpoint rule). Gauss-Legendre is exact for polynomial integrands up to degree ``2 steps - 1``
and keeps completeness (``sum IG = S(x) - S(x')``) well within 1% at 50 steps on smooth models
and on ReLU CNNs at ordinary resolutions (0.15% on a resnet18 with random BN statistics at
224 px); a Riemann sum that drops the ``a = 0`` end misses by a few percent. On a ReLU net
the integrand is piecewise constant: on very small inputs (32-64 px), where few units switch
along the path, any 50-node rule can miss by 1-3% and ``"riemann_middle"`` is often closer.

All ``B x steps`` scaled inputs of a batch run through the model as large batches of at most
``internal_batch_size`` images, gradients are summed into one ``(B, C, H, W)`` buffer: memory
stays flat however many steps are asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interpret.checks import positive_int
from interpret.methods.base import Explainer, TargetClass, ImageInput, check_target_range, parse_target_class

__all__ = ["BASELINES", "QUADRATURES", "IntegratedGradients", "gaussian_blur", "quadrature"]

BASELINES: tuple[str, ...] = ("black", "white", "blur", "random")
QUADRATURES: tuple[str, ...] = ("gausslegendre", "riemann_middle")


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a quadrature rule on [0, 1] (weights sum to 1).

    Args:
        steps: number of nodes, >= 1.
        method: ``"gausslegendre"`` or ``"riemann_middle"``.
    """
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"method can be {', '.join(QUADRATURES)}, got {method!r}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with edge replication."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = x
    for dim in (2, 3):
        shape = [1, 1, 1, 1]
        shape[dim] = kernel.numel()
        weight = kernel.view(shape).expand(channels, *shape[1:]).contiguous()
        pad = (0, 0, radius, radius) if dim == 2 else (radius, radius, 0, 0)
        padded = F.pad(out, pad, mode="replicate")
        out = F.conv2d(padded, weight, groups=channels)
    return out


class IntegratedGradients(Explainer):
    """Integrated Gradients with batched, memory-bounded quadrature.

    Baselines are defined in pixel space and mapped through the model's input normalisation
    (``mean``/``std`` given, else the timm data config, else none): ``"black"`` is pixel value 0,
    ``"white"`` pixel value 1, ``"random"`` uniform pixels from a local generator seeded with
    ``seed`` (the global RNG is untouched), ``"blur"`` a Gaussian blur of the input with
    ``blur_sigma`` pixels (default ``max(H, W) / 20``). A tensor baseline ``(C, H, W)`` or
    ``(B, C, H, W)`` is used as given (in model-input space).

    The heatmap is the sum over channels of ``|IG|``; :meth:`attribute` returns the signed
    ``(B, C, H, W)`` attributions.

    Args:
        model: any ``nn.Module`` returning logits ``(B, num_classes)``.
        baseline: ``"black" | "white" | "blur" | "random"`` or a tensor.
        steps: quadrature nodes, >= 1.
        internal_batch_size: most scaled images per forward/backward pass.
        method: ``"gausslegendre"`` (default) or ``"riemann_middle"``.
        mean: per-channel mean the inputs are normalised with, for the pixel-space baselines
            (default: the model's timm data config). Give the data's own statistics when the
            datamodule normalises with others, so that "black" is black in the data's space.
        std: per-channel input std (default: from the model).
        input_size: see :class:`~interpret.base.Explainer`.
        seed: seed of the local generator of the ``"random"`` baseline.
        blur_sigma: Gaussian sigma in pixels of the ``"blur"`` baseline.

    Raises:
        ValueError: an unknown baseline or method, non-positive ``steps``/``internal_batch_size``.
    """

    method_name = "integrated_gradients"

    def __init__(
        self,
        model: nn.Module,
        baseline: str | torch.Tensor = "black",
        steps: int = 50,
        internal_batch_size: int = 64,
        *,
        method: str = "gausslegendre",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
        seed: int = 0,
        blur_sigma: float | None = None,
    ) -> None:
        super().__init__(model, mean=mean, std=std, input_size=input_size)
        if isinstance(baseline, str):
            if baseline not in BASELINES:
                raise ValueError(f"baseline can be {', '.join(BASELINES)} or a tensor, got {baseline!r}")
        elif not isinstance(baseline, torch.Tensor):
            raise ValueError(
                f"baseline can be {', '.join(BASELINES)} or a tensor, got {type(baseline).__name__}"
            )
        elif baseline.ndim not in (3, 4):
            raise ValueError(f"a tensor baseline must be (C, H, W) or (B, C, H, W), got shape {tuple(baseline.shape)}")
        for name, value in (("steps", steps), ("internal_batch_size", internal_batch_size)):
            positive_int(value, name)
        if method not in QUADRATURES:
            raise ValueError(f"method can be {', '.join(QUADRATURES)}, got {method!r}")
        if blur_sigma is not None and blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
        self.baseline = baseline
        self.steps = steps
        self.internal_batch_size = internal_batch_size
        self.method = method
        self.seed = seed
        self.blur_sigma = blur_sigma

    # ----------------------------------------------------------------- baselines
    def _from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.normalization is None:
            return pixels
        mean, std = self.normalization
        if len(mean) != pixels.shape[1]:
            return pixels
        m = torch.tensor(mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
        return (pixels - m) / s

    def make_baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The baseline for a prepared batch ``x`` ``(B, C, H, W)`` (same shape, device, dtype)."""
        if isinstance(self.baseline, torch.Tensor):
            baseline = self.baseline.detach().to(device=x.device, dtype=x.dtype)
            if baseline.ndim == 3:
                baseline = baseline.unsqueeze(0)
            try:
                return baseline.expand_as(x).clone()
            except RuntimeError:
                raise ValueError(
                    f"baseline of shape {tuple(self.baseline.shape)} does not match the input {tuple(x.shape)}"
                ) from None
        if self.baseline == "black":
            return self._from_pixels(torch.zeros_like(x))
        if self.baseline == "white":
            return self._from_pixels(torch.ones_like(x))
        if self.baseline == "random":
            generator = torch.Generator(device=x.device)
            generator.manual_seed(self.seed)
            pixels = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return self._from_pixels(pixels)
        sigma = self.blur_sigma if self.blur_sigma is not None else max(x.shape[-2:]) / 20.0
        return gaussian_blur(x, sigma)

    # ---------------------------------------------------------------------- maths
    def _integrate(
        self, x: torch.Tensor, baseline: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        if targets is None:
            targets = self._predict(x).argmax(dim=1)
        nodes, weights = quadrature(self.steps, self.method)
        alphas = torch.tensor(nodes, device=x.device, dtype=x.dtype)
        quad_weights = torch.tensor(weights, device=x.device, dtype=torch.float32)
        diff = x - baseline
        total = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
        count = batch * self.steps
        checked = False
        for start in range(0, count, self.internal_batch_size):
            ids = torch.arange(start, min(start + self.internal_batch_size, count), device=x.device)
            image, step = ids // self.steps, ids % self.steps
            scaled = (baseline[image] + alphas[step].view(-1, 1, 1, 1) * diff[image]).requires_grad_(True)
            logits = self.model(scaled)
            if not checked:
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                    raise ValueError(f"the model must return logits (B, num_classes), got {type(logits).__name__}")
                check_target_range(targets, logits.shape[1])
                checked = True
            score = logits.gather(1, targets[image][:, None]).sum()
            (gradient,) = torch.autograd.grad(score, scaled)
            total.index_add_(0, image, gradient.float() * quad_weights[step].view(-1, 1, 1, 1))
        return diff.float() * total, targets

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._integrate(x, self.make_baseline(x), targets)

    def attribute(
        self, image: ImageInput, target_class: TargetClass = None, return_convergence_delta: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Signed attributions ``(B, C, H, W)``; optionally the completeness gap per image.

        Args:
            image: as for :meth:`explain`.
            target_class: None (predicted), an int, or one per image.
            return_convergence_delta: also return ``sum(IG) - (S(x) - S(baseline))`` per image.
        """
        batch, _, out_device, _, _ = self._prepare(image)
        with self._explaining():
            targets = parse_target_class(target_class, batch.shape[0], batch.device)
            baseline = self.make_baseline(batch)
            attributions, targets = self._integrate(batch, baseline, targets)
            if not return_convergence_delta:
                return attributions.detach().to(out_device)
            with torch.no_grad():
                rows = torch.arange(batch.shape[0], device=batch.device)
                gap = (self.model(batch)[rows, targets] - self.model(baseline)[rows, targets]).float()
            delta = attributions.flatten(1).sum(dim=1) - gap
        return attributions.detach().to(out_device), delta.to(out_device)

    def __repr__(self) -> str:
        baseline = self.baseline if isinstance(self.baseline, str) else "tensor"
        return (
            f"IntegratedGradients(model={type(self.model).__name__}, baseline={baseline!r}, steps={self.steps}, "
            f"internal_batch_size={self.internal_batch_size}, method={self.method!r})"
        )
