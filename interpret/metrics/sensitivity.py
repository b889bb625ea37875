"""Max-sensitivity (Yeh et al. 2019): how much an explanation moves under tiny input noise.

``SENS_max(x) = max_{j < n_samples} ||Phi(x + d_j) - Phi(x)||_F / ||Phi(x)||_F`` with each
``d_j`` drawn uniformly from the L-infinity ball of ``radius`` **in [0, 1] pixel space** (the
default 0.02 is about 5 grey levels out of 255). The images are normalised model inputs, so the
noise is divided by the normalisation's per-channel ``std`` before it is added (``mean`` plays no
part in a difference; it is used only with ``clip=True`` to keep pixels inside [0, 1]).

The explanation of each noisy copy is taken for the same class as the clean image (the target
given, else the prediction on the clean image). All ``B x n_samples`` noisy copies go through the
explainer in chunks of ``batch_size``. Lower is better; a map that does not depend on the input
at all (a constant) scores 0, so read this beside a faithfulness metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interpret.checks import positive_int
from interpret.layers import resolve_normalization
from interpret.metrics._inputs import (
    MapFunction,
    as_batch,
    as_maps,
    as_targets,
    call_explainer,
    check_chunk,
    pixel_std,
    predicted_classes,
)

__all__ = ["max_sensitivity"]


def max_sensitivity(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor | None,
    targets: torch.Tensor | None,
    explainer: MapFunction,
    *,
    n_samples: int = 10,
    radius: float = 0.02,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    clip: bool = False,
    batch_size: int = 32,
    seed: int = 0,
) -> torch.Tensor:
    """Max-sensitivity of ``explainer`` at each image, float32 ``(B,)``.

    Args:
        model: the classifier (used for the predicted class when ``targets`` is None, and for
            its input normalisation when ``std`` is not given).
        images: ``(B, C, H, W)`` normalised model inputs.
        maps: the explainer's maps ``(B, H, W)`` of the clean images, or None to compute them.
        targets: ``(B,)`` classes explained, or None for the predicted ones.
        explainer: an :class:`~interpret.base.Explainer` or a callable ``images -> maps`` /
            ``(images, targets) -> maps``, used for the noisy copies.
        n_samples: noisy copies per image (the maximum is over these).
        radius: half-width of the uniform noise in [0, 1] pixel space (L-infinity radius).
        mean: per-channel normalisation mean (only for ``clip``); default the model's.
        std: per-channel normalisation std; default the model's timm data config, else 1.
        clip: keep the noisy pixels inside [0, 1] (needs ``mean``/``std`` or the model's).
        batch_size: noisy copies per explainer call.
        seed: seed of a local generator (the global RNG is untouched).

    Returns:
        ``(B,)``; 0 where the map does not move, ``inf`` where a zero map becomes non-zero.
    """
    check_chunk(batch_size)
    positive_int(n_samples, "n_samples")
    if isinstance(radius, bool) or not isinstance(radius, int | float) or radius < 0:
        raise ValueError(f"radius must be a number >= 0 (in [0, 1] pixel units), got {radius!r}")
    x = as_batch(model, images)
    b, c, h, w = x.shape
    targets = as_targets(targets, b, x.device)
    if targets is None:
        targets = predicted_classes(model, x, batch_size)
    if maps is None:
        maps = call_explainer(explainer, x, targets, batch_size)
    clean = as_maps(maps, b, (h, w)).to(x.device)
    scale = pixel_std(model, c, std, x.device).to(x.dtype)
    low = high = None
    if clip:
        if mean is None:
            normalization = resolve_normalization(model)
            mean = normalization[0] if normalization is not None else [0.0] * c
        m = torch.tensor([float(v) for v in mean], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        low, high = (0.0 - m) / scale, (1.0 - m) / scale
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = (torch.rand((n_samples, b, c, h, w), generator=generator) * 2 - 1) * radius
    noisy = x.unsqueeze(0) + noise.to(device=x.device, dtype=x.dtype) / scale.unsqueeze(0)
    if clip:
        noisy = torch.maximum(torch.minimum(noisy, high.unsqueeze(0)), low.unsqueeze(0))
    noisy = noisy.reshape(n_samples * b, c, h, w)
    moved = call_explainer(explainer, noisy, targets.repeat(n_samples), batch_size).view(n_samples, b, h, w)
    difference = (moved - clean.unsqueeze(0)).flatten(2).norm(dim=2)  # (n_samples, B)
    norm = clean.flatten(1).norm(dim=1)  # (B,)
    ratio = torch.where(
        norm > 0,
        difference / torch.where(norm > 0, norm, torch.ones_like(norm)),
        torch.where(difference > 0, torch.full_like(difference, float("inf")), torch.zeros_like(difference)),
    )
    return ratio.amax(dim=0).float().cpu()
