"""Baseline "explanations" scored beside the real methods: a random map and a centred Gaussian.

A method that does not beat :class:`RandomMap` on a metric tells nothing on that metric; one that
does not beat :class:`CentreGaussianMap` may only be exploiting the photographer's bias (objects
near the centre). Both are :class:`~interpret.base.Explainer` subclasses, so they go everywhere an
explainer goes; neither looks at the model or the pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from interpret.methods.base import Explainer

__all__ = ["CentreGaussianMap", "RandomMap", "centre_gaussian_map", "random_map"]


def random_map(batch: int, size: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise maps ``(B, H, W)`` in [0, 1]."""
    return torch.rand((batch, *size), generator=generator)


def centre_gaussian_map(batch: int, size: tuple[int, int], sigma: float = 0.25) -> torch.Tensor:
    """An isotropic Gaussian bump at the image centre, ``(B, H, W)``, peak 1.

    Args:
        batch: how many copies.
        size: ``(H, W)``.
        sigma: standard deviation as a fraction of ``min(H, W)``.
    """
    h, w = size
    yy = torch.arange(h, dtype=torch.float32).view(h, 1) - (h - 1) / 2.0
    xx = torch.arange(w, dtype=torch.float32).view(1, w) - (w - 1) / 2.0
    s = sigma * min(h, w)
    bump = torch.exp(-(yy**2 + xx**2) / (2.0 * s * s))
    return bump.expand(batch, h, w).clone()


class RandomMap(Explainer):
    """Uniform random maps, fresh at every call, reproducible from ``seed``.

    Call ``k`` of the explainer draws from a generator seeded with ``seed + k``, so noisy copies
    of an image get different maps (as a random explanation should), yet a run is reproducible.

    Args:
        model: the model (only for the common explainer interface; never called).
        seed: the first call's seed.
    """

    method_name = "random"

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        super().__init__(model)
        self.seed = int(seed)
        self.calls = 0

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed + self.calls)
        self.calls += 1
        maps = random_map(x.shape[0], (int(x.shape[-2]), int(x.shape[-1])), generator).to(x.device)
        return maps, targets if targets is not None else torch.zeros(x.shape[0], dtype=torch.long, device=x.device)


class CentreGaussianMap(Explainer):
    """A centred Gaussian bump for every image (the same map whatever the model or image).

    Args:
        model: the model (only for the common explainer interface; never called).
        sigma: standard deviation as a fraction of ``min(H, W)``.
    """

    method_name = "centre_gaussian"

    def __init__(self, model: nn.Module, sigma: float = 0.25) -> None:
        super().__init__(model)
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or sigma <= 0:
            raise ValueError(f"sigma must be a positive fraction of the image size, got {sigma!r}")
        self.sigma = float(sigma)

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        maps = centre_gaussian_map(x.shape[0], (int(x.shape[-2]), int(x.shape[-1])), self.sigma).to(x.device)
        return maps, targets if targets is not None else torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
