"""Attention rollout and flow against hand-written references on small timm ViTs."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interpret import AttentionFlow, AttentionRollout, GradCAM
from interpret.attention import attention_flow, residual_attention


def _manual_attentions(vit, x: torch.Tensor) -> list[torch.Tensor]:
    """Attention probabilities recomputed from each block's weights, block by block."""
    with torch.no_grad():
        tokens = vit.patch_embed(x)
        tokens = vit._pos_embed(tokens)
        tokens = vit.norm_pre(vit.patch_drop(tokens))
        out = []
        for block in vit.blocks:
            attn = block.attn
            h = block.norm1(tokens)
            b, n, c = h.shape
            qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
            out.append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1))
            tokens = block(tokens)
    return out


def _rollout_reference(attentions: list[torch.Tensor]) -> np.ndarray:
    """Abnar & Zuidema: A' = 0.5 A + 0.5 I (head mean), R = A'_L ... A'_1."""
    result = None
    for a in attentions:
        mean = a.mean(1).double().numpy()
        layer = 0.5 * mean + 0.5 * np.eye(mean.shape[-1])[None]
        result = layer if result is None else layer @ result
    return result


def test_rollout_matches_reference_class_token(vit) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rollout = _rollout_reference(_manual_attentions(vit, x))
    expected = torch.from_numpy(rollout[:, 0, 1:]).float().reshape(2, 1, 4, 4)
    expected = F.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    got = AttentionRollout(vit).attribute(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert vit.blocks[0].attn.fused_attn == vit.blocks[0].attn.__dict__["fused_attn"]  # flag restored


def test_rollout_with_register_tokens_avg_pool_and_other_size(vit_registers) -> None:
    x = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    rollout = _rollout_reference(_manual_attentions(vit_registers, x))
    prefix = vit_registers.num_prefix_tokens
    assert prefix == 2
    row = rollout[:, prefix:, :].mean(1)[:, prefix:]  # mean over patch rows, patch columns
    expected = torch.from_numpy(row).float().reshape(1, 1, 6, 5)
    expected = F.interpolate(expected, size=(48, 40), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(AttentionRollout(vit_registers).attribute(x), expected, atol=1e-5, rtol=1e-4)
    assert AttentionRollout(vit_registers).explain(x[0]).shape == (48, 40)


def test_discard_ratio_and_head_fusion(vit) -> None:
    x = torch.randn(1, 3, 32, 32)
    plain = AttentionRollout(vit).explain(x)
    for kwargs in ({"discard_ratio": 0.9}, {"head_fusion": "max"}, {"head_fusion": "min"}):
        maps = AttentionRollout(vit, **kwargs).explain(x)
        assert maps.shape == (1, 32, 32)
        assert not torch.isnan(maps).any()
    assert not torch.allclose(AttentionRollout(vit, discard_ratio=0.9).explain(x), plain)


def test_residual_attention_rows_sum_to_one() -> None:
    a = torch.rand(2, 5, 5)
    out = residual_attention(a, discard_ratio=0.5)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 5))


def test_flow_two_layers_closed_form() -> None:
    """With two layers every path j -> k -> t is disjoint: flow = sum_k min(A1[k, j], A2[t, k])."""
    rng = np.random.default_rng(0)
    layers = rng.random((2, 4, 4))
    layers /= layers.sum(-1, keepdims=True)
    sink = 1
    got = attention_flow(layers, range(4), sink)
    expected = [sum(min(layers[0][k, j], layers[1][sink, k]) for k in range(4)) for j in range(4)]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_flow_matches_networkx_on_four_layers() -> None:
    rng = np.random.default_rng(1)
    layers = rng.random((4, 5, 5))
    layers /= layers.sum(-1, keepdims=True)
    graph = nx.DiGraph()
    for layer in range(4):
        for i in range(5):
            for j in range(5):
                graph.add_edge((layer, j), (layer + 1, i), capacity=float(layers[layer][i, j]))
    expected = [nx.maximum_flow_value(graph, (0, j), (4, 0)) for j in range(5)]
    np.testing.assert_allclose(attention_flow(layers, range(5), 0), expected, atol=1e-5)


def test_attention_flow_explainer(vit) -> None:
    x = torch.randn(1, 3, 32, 32)
    maps = AttentionFlow(vit).explain(x)
    assert maps.shape == (1, 32, 32) and float(maps.max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="target_patch 99 is out of range"):
        AttentionFlow(vit, target_patch=99).explain(x)


def test_attention_methods_need_a_vit(cnn) -> None:
    for cls in (AttentionRollout, AttentionFlow):
        with pytest.raises(ValueError, match="needs a timm Vision Transformer.*Sequential has no attention"):
            cls(cnn)


def test_bad_arguments(vit) -> None:
    with pytest.raises(ValueError, match="head_fusion can be mean, max, min, got 'median'"):
        AttentionRollout(vit, head_fusion="median")
    with pytest.raises(ValueError, match=r"discard_ratio must be a number in \[0, 1\)"):
        AttentionRollout(vit, discard_ratio=1.0)
    with pytest.raises(ValueError, match="target_patch must be an int >= 0"):
        AttentionFlow(vit, target_patch=-1)


def test_gradcam_still_works_after_rollout(vit) -> None:
    """fused_attn is restored, and a later gradient method is unaffected."""
    x = torch.randn(1, 3, 32, 32)
    before = GradCAM(vit).explain(x, target_class=0)
    AttentionRollout(vit).explain(x)
    torch.testing.assert_close(GradCAM(vit).explain(x, target_class=0), before)
