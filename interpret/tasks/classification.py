"""Classification: explain each image for its predicted class, caption it true vs predicted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from interpret.layers import model_dtype
from interpret.render import make_grid, overlay_heatmap
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

        handle = model.register_forward_hook(keep_logits)
        try:
            heatmaps = request.explainer.explain(x, target_class=None)  # None: the predicted class
        finally:
            handle.remove()
        if seen:
            logits = seen[0]
        else:
            with torch.no_grad():
                logits = model(x)
        confidence, predicted = logits.float().softmax(dim=-1).max(dim=-1)
        return SampleResult(heatmaps=heatmaps.detach().float().cpu(), predicted=predicted.cpu(), confidence=confidence.cpu())

    def render_samples(
        self,
        images: Tensor,
        result: SampleResult,
        request: SampleRequest,
        *,
        labels: Tensor | None,
        class_names: Sequence[str] | None,
        title: str,
    ) -> tuple[np.ndarray, str]:
        """Four tiles a row, each captioned ``true: ...`` / ``pred: ... (confidence)`` (green when
        right, red when wrong, black without a label); the summary lists the same per image."""
        assert result.heatmaps is not None and result.predicted is not None and result.confidence is not None
        tiles, captions, colors, summary = [], [], [], []
        for i in range(images.shape[0]):
            tiles.append(
                overlay_heatmap(
                    images[i], result.heatmaps[i], alpha=request.alpha, colormap=request.colormap,
                    mean=request.mean, std=request.std,
                )
            )
            pred = int(result.predicted[i])
            true = int(labels[i]) if labels is not None else None
            true_name = class_name(class_names, true) if true is not None else "?"
            lines = [f"true: {true_name}", f"pred: {class_name(class_names, pred)} ({float(result.confidence[i]):.2f})"]
            captions.append(lines)
            colors.append((0, 0, 0) if true is None else (0, 128, 0) if true == pred else (200, 0, 0))
            summary.append(f"{i}: {lines[0]}, {lines[1]}")
        grid = make_grid(
            tiles, captions, ncols=4, padding=6, font_size=11, title=f"{request.method} | {title}", colors=colors,
            min_tile=TILE_MIN,
        )
        return grid, "; ".join(summary)
