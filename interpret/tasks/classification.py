"""Classification: explain each image for its predicted class, caption it true vs predicted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from interpret.layers import model_dtype
from interpret.methods.base import normalize_maps
from interpret.render import make_grid
from interpret.tiles import sample_panel, scale_note
from interpret.tasks.base import TILE_MIN, SampleRequest, SampleResult, Task, class_name

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """A model returning ``(B, K)`` logits; every registered method applies."""

    name: ClassVar[str] = "classification"
    methods: ClassVar[tuple[str, ...] | None] = None

    def cam_layer(self, model: nn.Module, method: str) -> str | None:
        """None: the explainer's automatic layer (:func:`interpret.layers.default_target_layer`)."""
        return None

    def explain_samples(self, model: nn.Module, images: Tensor, request: SampleRequest) -> SampleResult:
        """Explain each image for its predicted class with ``request.explainer``.

        The explainer runs the model on these very images to find the predicted class: those
        logits are kept (a forward hook) instead of paying for another forward pass.
        """
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = images.detach().to(device=device, dtype=model_dtype(model), copy=True)
        seen: list[Tensor] = []

        def keep_logits(module: nn.Module, args: Any, output: Any) -> None:
            if not seen and args and isinstance(args[0], Tensor) and isinstance(output, Tensor):
                if args[0].shape == x.shape and torch.equal(args[0].detach(), x):
                    seen.append(output.detach())

        signed = None
        handle = model.register_forward_hook(keep_logits)
        try:
            if _is_signed(request.explainer):  # one pass gives both the signed and the |.| map
                raw = request.explainer.attribute(x, target_class=None).detach().float()
                signed = raw.sum(dim=1)
                heatmaps = normalize_maps(raw.abs().sum(dim=1))
            else:
                heatmaps = request.explainer.explain(x, target_class=None)  # None: the predicted class
        finally:
            handle.remove()
        if seen:
            logits = seen[0]
        else:
            with torch.no_grad():
                logits = model(x)
        confidence, predicted = logits.float().softmax(dim=-1).max(dim=-1)
        return SampleResult(
            heatmaps=heatmaps.detach().float().cpu(), predicted=predicted.cpu(), confidence=confidence.cpu(),
            signed=signed.cpu() if signed is not None else None,
        )

    def render_samples(
        self,
        images: Tensor,
        result: SampleResult,
        request: SampleRequest,
        *,
        labels: Tensor | None,
        class_names: Sequence[str] | None,
        title: str,
        masks: Tensor | None = None,
        truth_boxes: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, str]:
        """Two samples a row, each ``picture | heatmap + colour bar | overlay`` (inputs upscaled
        nearest-neighbour to at least :data:`TILE_MIN` px; ``masks`` outlined), captioned
        ``pred: ... (confidence), true: ...`` (green when right, red when wrong, black without a
        label); signed attributions (Integrated Gradients) in a diverging colormap. The grid's
        title states the scale; the summary lists the captions."""
        assert result.heatmaps is not None and result.predicted is not None and result.confidence is not None
        signed = result.signed is not None
        tiles, captions, colors, summary = [], [], [], []
        for i in range(images.shape[0]):
            tiles.append(
                sample_panel(
                    images[i], result.signed[i] if result.signed is not None else result.heatmaps[i],
                    mean=request.mean, std=request.std, colormap=request.colormap, alpha=request.alpha,
                    signed=signed, mask=masks[i] if masks is not None else None, min_size=TILE_MIN,
                )
            )
            pred = int(result.predicted[i])
            true = int(labels[i]) if labels is not None else None
            verdict = "" if true is None else ("  right" if true == pred else "  wrong")
            line = f"pred: {class_name(class_names, pred)} ({float(result.confidence[i]):.2f})"
            line += f", true: {class_name(class_names, true)}{verdict}" if true is not None else ""
            shown = result.signed[i] if result.signed is not None else result.heatmaps[i]
            if not bool(torch.as_tensor(shown).abs().amax() > 0):  # nothing to see: say so, not a blank colour
                line += " (empty map: no positive evidence at this layer)"
            captions.append([f"{i}: {line}"])
            colors.append((0, 0, 0) if true is None else (0, 128, 0) if true == pred else (200, 0, 0))
            summary.append(f"{i}: {line}")
        note = scale_note(request.method, signed)
        if masks is not None:
            note += "; white outline: the object"
        grid = make_grid(
            tiles, captions, ncols=min(2, len(tiles)), padding=10, font_size=12,
            title=f"{request.method} | {title}\n{note}", colors=colors,
        )
        return grid, "; ".join(summary)


def _is_signed(explainer: Any) -> bool:
    """Whether ``explainer`` gives signed pixel attributions worth showing with their sign (Integrated Gradients)."""
    from interpret.methods.integrated_gradients import IntegratedGradients

    return isinstance(explainer, IntegratedGradients)
