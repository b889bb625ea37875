"""Deletion and insertion curves (Petsiuk et al. 2018, the RISE protocol).

Pixels are ranked by descending saliency over ``H x W`` (all channels of a pixel move together).
*Deletion* replaces the top-ranked pixels, a block of pixels per step, with a substrate (zeros in
the model's normalised input space by default, i.e. the data mean) and records the softmax
probability of the target class: a faithful map makes it fall fast (low AUC is good).
*Insertion* starts from a Gaussian blur of the image (kernel 11, sigma 5) and puts the original
pixels back in the same order: a faithful map makes the probability rise fast (high AUC is good).

The curve has ``n_steps + 1`` points, from 0 pixels changed to all of them; by default
``n_steps = min(224, H * W)``, which at 224 px is RISE's 224 pixels per step. The AUC is the
trapezoid rule over a [0, 1] x-axis, so it lies in [0, 1].

All ``B x (n_steps + 1)`` perturbed images of each curve (the clean image once for both) are built chunk by chunk (``batch_size`` images per
forward pass) straight from the images, the substrate and each pixel's rank: no image is ever
processed alone and memory stays flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from interpret.metrics._inputs import as_batch, as_maps, as_targets, check_chunk, predict_proba, predicted_classes

__all__ = [
    "CurveResult",
    "SUBSTRATES",
    "blurred",
    "deletion",
    "deletion_insertion",
    "insertion",
    "pixel_counts",
    "trapezoid_auc",
]

SUBSTRATES: tuple[str, ...] = ("zeros", "blur", "mean")
#: RISE's number of steps (224 pixels per step at 224 x 224)
DEFAULT_STEPS = 224


@dataclass(frozen=True)
class CurveResult:
    """Curves and AUCs of one perturbation metric for a batch.

    Attributes:
        curves: float32 ``(B, n_steps + 1)``: the target-class probability after changing
            ``fractions[k]`` of the pixels.
        fractions: float32 ``(n_steps + 1,)`` fraction of the pixels changed at each point (0 to 1).
        auc: float32 ``(B,)`` trapezoid AUC over the [0, 1] axis.
        targets: ``(B,)`` the classes scored.
    """

    curves: torch.Tensor
    fractions: torch.Tensor
    auc: torch.Tensor
    targets: torch.Tensor


def trapezoid_auc(curves: torch.Tensor, fractions: torch.Tensor | None = None) -> torch.Tensor:
    """Area under ``curves`` ``(..., n)`` by the trapezoid rule on a [0, 1] x-axis.

    Args:
        curves: the y values, the last dimension being the curve.
        fractions: x positions ``(n,)`` from 0 to 1; None for equally spaced points (RISE's
            ``(sum - y0/2 - yn/2) / (n - 1)``).
    """
    curves = curves.float()
    n = curves.shape[-1]
    if n < 2:
        raise ValueError(f"a curve needs at least 2 points for an AUC, got {n}")
    if fractions is None:
        return (curves.sum(-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / (n - 1)
    return torch.trapezoid(curves, fractions.to(curves), dim=-1)


def pixel_counts(num_pixels: int, n_steps: int) -> torch.Tensor:
    """How many pixels are changed at each of the ``n_steps + 1`` points: ``round(k * HW / n_steps)``."""
    steps = torch.arange(n_steps + 1, dtype=torch.float64)
    return torch.round(steps * num_pixels / n_steps).long()


def blurred(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion start: a Gaussian blur (torchvision, reflect padding) of each channel."""
    return gaussian_blur(images, kernel_size=[kernel_size, kernel_size], sigma=[sigma, sigma])


def _substrate(images: torch.Tensor, substrate: str | float | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(substrate, torch.Tensor):
        try:
            return substrate.to(images).expand_as(images)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(substrate.shape)} does not broadcast to the images {tuple(images.shape)}"
            ) from None
    if isinstance(substrate, int | float) and not isinstance(substrate, bool):
        return torch.full_like(images, float(substrate))
    if substrate == "zeros":
        return torch.zeros_like(images)
    if substrate == "blur":
        return blurred(images)
    if substrate == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    raise ValueError(f"{name} can be {', '.join(SUBSTRATES)}, a number or a tensor, got {substrate!r}")


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """Each pixel's position ``(B, H*W)`` in the descending-saliency order (0 = most salient).

    Ties keep raster order (a stable sort), so a constant map removes pixels row by row.
    """
    order = torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices
    ranks = torch.empty(order.shape, dtype=torch.int32, device=order.device)
    positions = torch.arange(order.shape[1], dtype=torch.int32, device=order.device)
    ranks.scatter_(1, order, positions.expand(order.shape))
    return ranks


def _curves(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | None,
    modes: tuple[str, ...],
    n_steps: int | None,
    batch_size: int,
    substrate: str | float | torch.Tensor,
    start: str | float | torch.Tensor,
) -> dict[str, CurveResult]:
    check_chunk(batch_size)
    x = as_batch(model, images)
    b, _, h, w = x.shape
    saliency = as_maps(maps, b, (h, w)).to(x.device)
    hw = h * w
    if n_steps is None:
        n_steps = min(DEFAULT_STEPS, hw)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 1 <= n_steps <= hw:
        raise ValueError(f"n_steps must be an int from 1 to H*W = {hw}, got {n_steps!r}")
    targets = as_targets(targets, b, x.device)
    if targets is None:
        targets = predicted_classes(model, x, batch_size)
    ranks = _ranks(saliency)  # (B, HW)
    counts = pixel_counts(hw, n_steps).to(device=x.device, dtype=torch.int32)  # (n_steps + 1,)
    points = n_steps + 1
    fractions = counts.float().cpu() / hw
    results: dict[str, CurveResult] = {}
    for mode in modes:
        # insertion's last point (every pixel back) is the clean image, deletion's first point:
        # when both run, it is scored once
        shared = mode == "insertion" and "deletion" in results
        scored_points = points - 1 if shared else points
        if mode == "deletion":
            # changed pixels take the substrate, the rest stays the image
            changed, kept = _substrate(x, substrate, "substrate"), x
        else:
            # changed pixels are the image again, the rest is the blurred start
            changed, kept = x, _substrate(x, start, "start")

        def make_inputs(
            part: slice, changed: torch.Tensor = changed, kept: torch.Tensor = kept, scored_points: int = scored_points
        ) -> torch.Tensor:
            ids = torch.arange(part.start, part.stop, device=x.device)
            image, step = ids // scored_points, ids % scored_points
            mask = (ranks[image] < counts[step][:, None]).view(-1, 1, h, w)
            return torch.where(mask, changed[image], kept[image])

        target_of = targets.repeat_interleave(scored_points)
        curves = predict_proba(model, make_inputs, b * scored_points, target_of, batch_size).view(b, scored_points)
        if shared:
            curves = torch.cat([curves, results["deletion"].curves[:, :1]], dim=1)
        results[mode] = CurveResult(curves, fractions, trapezoid_auc(curves, fractions), targets.cpu())
    return results


def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    n_steps: int | None = None,
    batch_size: int = 32,
    substrate: str | float | torch.Tensor = "zeros",
    start: str | float | torch.Tensor = "blur",
) -> dict[str, CurveResult]:
    """Deletion and insertion curves of saliency ``maps`` for ``images``.

    Args:
        model: a classifier returning logits ``(B, num_classes)``; left as it was found.
        images: ``(B, C, H, W)`` model inputs (normalised as the model expects).
        maps: ``(B, H, W)`` saliency, higher = more important.
        targets: ``(B,)`` classes to score (softmax probability); None for the predicted ones.
        n_steps: points on the curve minus one; default ``min(224, H * W)`` (224 px per step at 224 px).
        batch_size: perturbed images per forward pass.
        substrate: what deleted pixels become: ``"zeros"`` (in normalised space, the default),
            ``"blur"``, ``"mean"`` (each image's channel means), a number or a tensor.
        start: the image insertion starts from: ``"blur"`` (kernel 11, sigma 5, the default) or as ``substrate``.

    Returns:
        ``{"deletion": CurveResult, "insertion": CurveResult}``.
    """
    return _curves(model, images, maps, targets, ("deletion", "insertion"), n_steps, batch_size, substrate, start)


def deletion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    n_steps: int | None = None,
    batch_size: int = 32,
    substrate: str | float | torch.Tensor = "zeros",
) -> CurveResult:
    """The deletion curve only (lower AUC = more faithful); see :func:`deletion_insertion`."""
    return _curves(model, images, maps, targets, ("deletion",), n_steps, batch_size, substrate, "blur")["deletion"]


def insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    n_steps: int | None = None,
    batch_size: int = 32,
    start: str | float | torch.Tensor = "blur",
) -> CurveResult:
    """The insertion curve only (higher AUC = more faithful); see :func:`deletion_insertion`."""
    return _curves(model, images, maps, targets, ("insertion",), n_steps, batch_size, "zeros", start)["insertion"]
