"""Attention rollout and attention flow (Abnar & Zuidema 2020) for timm Vision Transformers.

The attention probabilities of every block are read during one forward pass: each block's
``attn.fused_attn`` is switched off for that pass (and restored), so timm computes the softmax
explicitly, and a forward hook on ``attn.attn_drop`` (an identity in eval mode) reads it.

Both methods use the residual-augmented attention of each layer, ``(A + I)`` with rows
renormalised to sum to 1 (for head-averaged attention this is ``0.5 A + 0.5 I``).

Class-token models read the class token's row; models without a class token (average or
attention pooling) read the mean of the patch tokens' rows. Prefix tokens (class and register
tokens) are dropped from the map, and the patch grid is the model's own grid for the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from interpret.methods.base import Explainer, resize_maps
from interpret.hooks import HookManager
from interpret.layers import find_vision_transformer, tokens_to_grid

__all__ = [
    "HEAD_FUSIONS",
    "AttentionFlow",
    "AttentionRollout",
    "attention_flow",
    "attention_rollout",
    "fuse_heads",
    "residual_attention",
]

HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")


# ------------------------------------------------------------------------------- maths
def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Fuse ``(B, heads, N, N)`` attention over heads into ``(B, N, N)`` (mean, max or min)."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion can be {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")


def residual_attention(
    fused: torch.Tensor, discard_ratio: float = 0.0, protect_class_token: bool = False
) -> torch.Tensor:
    """``(A + I)`` with rows renormalised, after zeroing the lowest ``discard_ratio`` of ``A``'s entries.

    Args:
        fused: ``(B, N, N)`` head-fused attention.
        discard_ratio: fraction in [0, 1) of each matrix's smallest entries set to zero first (the
            identity added afterwards keeps every row non-empty).
        protect_class_token: never discard the class token's attention to itself (entry
            ``[0, 0]``), as Gildenblat's "vit-explain" rollout does: the ``k`` lowest entries are
            chosen, then ``[0, 0]`` is taken out of that set.
    """
    batch, n, _ = fused.shape
    if discard_ratio > 0:
        flat = fused.reshape(batch, -1)
        k = int(flat.shape[1] * discard_ratio)
        if k > 0:
            lowest = flat.topk(k, dim=1, largest=False).indices
            drop = torch.zeros_like(flat, dtype=torch.bool).scatter(1, lowest, True)
            if protect_class_token:
                drop[:, 0] = False
            flat = flat.masked_fill(drop, 0.0)
        fused = flat.view(batch, n, n)
    augmented = fused + torch.eye(n, device=fused.device, dtype=fused.dtype)
    return augmented / augmented.sum(dim=-1, keepdim=True)


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    protect_class_token: bool = False,
) -> torch.Tensor:
    """Rollout ``R = A_L ... A_1`` of the residual-augmented attentions, ``(B, N, N)``.

    ``R[b, i, j]`` is how much output token ``i`` draws on input token ``j``.

    Args:
        attentions: one ``(B, heads, N, N)`` attention tensor per layer, first layer first.
        head_fusion: ``"mean" | "max" | "min"``.
        discard_ratio: see :func:`residual_attention`.
        protect_class_token: see :func:`residual_attention`.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one attention matrix")
    result: torch.Tensor | None = None
    for attention in attentions:
        layer = residual_attention(fuse_heads(attention.float(), head_fusion), discard_ratio, protect_class_token)
        result = layer if result is None else layer @ result
    return result  # type: ignore[return-value]


def attention_flow(
    layers: np.ndarray, sources: Sequence[int], sink: int | Sequence[int], scale: float = 2.0**24
) -> np.ndarray:
    """Maximum flow from each input token to one output token through the layer graph.

    The graph has a node per token and layer boundary; the edge from token ``j`` at boundary
    ``l - 1`` to token ``i`` at boundary ``l`` has capacity ``layers[l - 1][i, j]``. With a list
    of tokens as ``sink``, the sink is one readout token whose last-layer capacities are the mean
    of those tokens' rows (for average-pooled models: the mean of the patch rows, the same
    readout attention rollout uses, since the mean of the rollout's rows is that mean row times
    the rollout of the layers below). Solved
    exactly by :func:`scipy.sparse.csgraph.maximum_flow` (Dinic) on integer capacities
    ``round(capacity * scale)``; the only approximation is that quantisation (relative error
    about ``N / scale``).

    Args:
        layers: ``(L, N, N)`` residual-augmented, row-normalised attention of one image.
        sources: input token indices to compute the flow from.
        sink: the output token at the last layer, or a list of tokens whose rows are averaged.
        scale: integer scale of the capacities.

    Returns:
        ``(len(sources),)`` float flow values.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import maximum_flow

    num_layers, n, _ = layers.shape
    if isinstance(sink, int | np.integer):
        sink_token, last_row = int(sink), np.asarray(layers[-1], dtype=np.float64)[int(sink), :]
    else:
        rows_of = [int(i) for i in sink]
        if not rows_of:
            raise ValueError("sink must be a token index or a non-empty list of token indices")
        sink_token, last_row = rows_of[0], np.asarray(layers[-1], dtype=np.float64)[rows_of, :].mean(axis=0)
    rows, cols, caps = [], [], []
    grid = np.arange(n)
    for layer in range(num_layers):
        matrix = np.rint(np.asarray(layers[layer], dtype=np.float64) * scale).astype(np.int64)
        if layer == num_layers - 1:
            # only the sink matters at the last boundary
            targets, inputs = np.full(n, sink_token), grid
            values = np.rint(last_row * scale).astype(np.int64)
        else:
            targets, inputs = np.repeat(grid, n), np.tile(grid, n)
            values = matrix.reshape(-1)
        keep = values > 0
        rows.append(layer * n + inputs[keep])
        cols.append((layer + 1) * n + targets[keep])
        caps.append(values[keep])
    size = (num_layers + 1) * n
    graph = coo_matrix(
        (np.concatenate(caps).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    ).tocsr()
    sink_node = num_layers * n + sink_token
    flows = [maximum_flow(graph, int(s), sink_node, method="dinic").flow_value for s in sources]
    return np.asarray(flows, dtype=np.float64) / scale


# --------------------------------------------------------------------------- explainers
class _AttentionExplainer(Explainer):
    """Shared machinery: find the ViT and read every block's attention during a forward."""

    def __init__(self, model: nn.Module, head_fusion: str, **inputs: Any) -> None:
        super().__init__(model, **inputs)
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion can be {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
        found = find_vision_transformer(model)
        if found is None:
            raise ValueError(
                f"{type(self).__name__} needs a timm Vision Transformer (a model with patch_embed and blocks "
                f"holding .attn); {type(model).__name__} has no attention blocks. Use gradcam, gradcam++, "
                "integrated_gradients or smoothgrad instead"
            )
        self.vit_prefix, self.vit = found
        attentions = [getattr(block, "attn", None) for block in self.vit.blocks]
        unsupported = [
            type(a).__name__ for a in attentions if a is None or not hasattr(a, "fused_attn") or not hasattr(a, "attn_drop")
        ]
        if unsupported or not attentions:
            raise ValueError(
                f"{type(self).__name__} reads timm attention modules with fused_attn and attn_drop; "
                f"{type(self.vit).__name__} has blocks with {sorted(set(unsupported)) or 'no blocks'}"
            )
        self._attention_modules: list[nn.Module] = attentions  # type: ignore[assignment]
        self.head_fusion = head_fusion

    def attention_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and every block's attention probabilities ``(B, heads, N, N)`` for a batch."""
        captured: list[torch.Tensor] = []

        def keep(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            captured.append(output.detach())

        saved = [(module, module.__dict__.get("fused_attn", None)) for module in self._attention_modules]
        try:
            for module in self._attention_modules:
                module.fused_attn = False
            with HookManager() as hooks, torch.no_grad():
                for module in self._attention_modules:
                    hooks.register_forward_hook(module.attn_drop, keep)
                logits = self.model(x)
        finally:
            for module, value in saved:
                if value is None:
                    module.__dict__.pop("fused_attn", None)
                else:
                    module.fused_attn = value
        if len(captured) != len(self._attention_modules):
            raise RuntimeError(
                f"expected one attention map per block ({len(self._attention_modules)}), read {len(captured)}"
            )
        return logits, captured

    @property
    def reads_class_token(self) -> bool:
        """Whether the prediction reads the class token (else the mean of the patch tokens)."""
        prefix = int(self.vit.num_prefix_tokens)
        return bool(
            getattr(self.vit, "has_class_token", prefix > 0) and getattr(self.vit, "global_pool", "token") == "token"
        )

    def _readout_rows(self, matrix: torch.Tensor) -> torch.Tensor:
        """The output token(s) a prediction reads: class token row, else the mean of the patch rows."""
        if self.reads_class_token:
            return matrix[:, 0, :]
        return matrix[:, int(self.vit.num_prefix_tokens) :, :].mean(dim=1)

    def _to_grid(self, row: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return tokens_to_grid(row.unsqueeze(-1), self.vit, size)[:, 0]


class AttentionRollout(_AttentionExplainer):
    """Attention rollout (Abnar & Zuidema 2020) of a timm Vision Transformer.

    The map is the readout token's row of the rollout over all blocks, on the patch grid,
    bilinearly upsampled and min-max normalised. It does not depend on the class:
    ``target_class`` is only checked against the number of classes.

    Args:
        vit_model: a timm ViT, or a module holding one (e.g. ``ImageClassifier``).
        head_fusion: ``"mean" | "max" | "min"`` over heads.
        discard_ratio: fraction in [0, 1) of each layer's lowest attention weights set to zero
            before the identity is added (Gildenblat's "vit-explain" variant); 0 is plain rollout.
            As in that variant, a class-token model's class-token self-attention ``[0, 0]`` is
            never discarded.
        mean: see :class:`~interpret.base.Explainer`.
        std: see :class:`~interpret.base.Explainer`.
        input_size: see :class:`~interpret.base.Explainer`.

    Raises:
        ValueError: a model without attention blocks, a bad ``head_fusion`` or ``discard_ratio``.
    """

    method_name = "attention_rollout"

    def __init__(
        self,
        vit_model: nn.Module,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(vit_model, head_fusion, mean=mean, std=std, input_size=input_size)
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, int | float) or not 0 <= discard_ratio < 1:
            raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
        self.discard_ratio = float(discard_ratio)

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attentions = self.attention_maps(x)
        targets = self._resolve_targets(logits, targets)
        protect = self.reads_class_token or bool(getattr(self.vit, "has_class_token", False))
        rollout = attention_rollout(attentions, self.head_fusion, self.discard_ratio, protect)
        grid = self._to_grid(self._readout_rows(rollout), (int(x.shape[-2]), int(x.shape[-1])))
        return resize_maps(grid, (int(x.shape[-2]), int(x.shape[-1]))), targets


class AttentionFlow(_AttentionExplainer):
    """Attention flow (Abnar & Zuidema 2020): max-flow from each patch token to one output token.

    Each layer's capacities are the head-fused, residual-augmented, row-normalised attention; the
    heatmap of patch ``j`` is the maximum flow from input token ``j`` to the output the
    prediction reads after the last block, solved exactly (integer capacities, see
    :func:`attention_flow`). The cost grows as ``patches x layers x tokens^2`` per image: seconds
    for a 224 px ViT-B/16. Like rollout it does not depend on the class.

    The default output is the one rollout reads: the class token of a class-token model, else
    (average pooling) one readout token whose last-layer attention is the mean of the patch
    tokens' rows.

    Args:
        vit_model: a timm ViT, or a module holding one.
        target_patch: None for the default readout above, or one output token index.
        head_fusion: ``"mean" | "max" | "min"`` over heads.
        mean: see :class:`~interpret.base.Explainer`.
        std: see :class:`~interpret.base.Explainer`.
        input_size: see :class:`~interpret.base.Explainer`.

    Raises:
        ValueError: a model without attention blocks, a negative ``target_patch``.
    """

    method_name = "attention_flow"

    def __init__(
        self,
        vit_model: nn.Module,
        target_patch: int | None = None,
        head_fusion: str = "mean",
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(vit_model, head_fusion, mean=mean, std=std, input_size=input_size)
        if target_patch is not None and (
            isinstance(target_patch, bool) or not isinstance(target_patch, int) or target_patch < 0
        ):
            raise ValueError(f"target_patch must be None or an int >= 0, got {target_patch!r}")
        self.target_patch = target_patch

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attentions = self.attention_maps(x)
        targets = self._resolve_targets(logits, targets)
        tokens = attentions[0].shape[-1]
        prefix = int(self.vit.num_prefix_tokens)
        sink: int | list[int]
        if self.target_patch is not None:
            if self.target_patch >= tokens:
                raise ValueError(f"target_patch {self.target_patch} is out of range: the model has {tokens} tokens")
            sink = self.target_patch
        else:
            sink = 0 if self.reads_class_token else list(range(prefix, tokens))
        layers = torch.stack(
            [residual_attention(fuse_heads(a.float(), self.head_fusion)) for a in attentions], dim=1
        )  # (B, L, N, N)
        sources = list(range(prefix, tokens))
        rows = torch.zeros((x.shape[0], tokens), dtype=torch.float32)
        for b in range(x.shape[0]):
            flows = attention_flow(layers[b].cpu().numpy(), sources, sink)
            rows[b, prefix:] = torch.from_numpy(flows).float()
        grid = self._to_grid(rows.to(x.device), (int(x.shape[-2]), int(x.shape[-1])))
        return resize_maps(grid, (int(x.shape[-2]), int(x.shape[-1]))), targets
