"""Vanilla gradient saliency (Simonyan et al. 2014), the usual base of SmoothGrad."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interpret.methods.base import Explainer, resize_maps

__all__ = ["Saliency"]


class Saliency(Explainer):
    """The gradient of the class score w.r.t. the input pixels.

    :meth:`attribute` returns ``|dS/dx|`` (or the signed gradient with ``absolute=False``) per
    channel, ``(B, C, H, W)``; the heatmap is its maximum over channels (Simonyan et al.).

    Args:
        model: any ``nn.Module`` returning logits ``(B, num_classes)``.
        absolute: take the absolute value of the gradient before any averaging.
        mean: see :class:`~interpret.base.Explainer`.
        std: see :class:`~interpret.base.Explainer`.
        input_size: see :class:`~interpret.base.Explainer`.
    """

    method_name = "saliency"

    def __init__(
        self,
        model: nn.Module,
        absolute: bool = True,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(model, mean=mean, std=std, input_size=input_size)
        self.absolute = bool(absolute)

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = x.detach().requires_grad_(True)
        logits = self.model(inputs)
        targets = self._resolve_targets(logits, targets)
        score = logits.gather(1, targets[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, inputs)
        gradient = gradient.float()
        return (gradient.abs() if self.absolute else gradient), targets

    def _to_map(self, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize_maps(raw.abs().amax(dim=1), size)
