"""Attention rollout and flow against hand-written references on small timm ViTs."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interpret import AttentionFlow, AttentionRollout, GradCAM
from interpret.methods.attention import attention_flow, residual_attention


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


def _layer_reference(a: np.ndarray, fusion: str, discard_ratio: float = 0.0, protect: bool = False) -> np.ndarray:
    """One image's (heads, N, N) attention -> fused, discarded as vit-explain does, (A + I) row-normalised."""
    fused = {"mean": a.mean(0), "max": a.max(0), "min": a.min(0)}[fusion].copy()
    if discard_ratio:
        flat = fused.reshape(-1)
        lowest = np.argsort(flat, kind="stable")[: int(flat.size * discard_ratio)]
        if protect:
            lowest = lowest[lowest != 0]  # vit-explain: indices = indices[indices != 0]
        flat[lowest] = 0.0
        fused = flat.reshape(fused.shape)
    layer = fused + np.eye(fused.shape[0])
    return layer / layer.sum(-1, keepdims=True)


def _flow_reference(layers: list[np.ndarray], sink_row: np.ndarray) -> list[float]:
    """Max flow (networkx) from every input token to a sink whose last-layer capacities are ``sink_row``."""
    graph = nx.DiGraph()
    n = layers[0].shape[0]
    for depth, layer in enumerate(layers[:-1]):
        for i in range(n):
            for j in range(n):
                graph.add_edge((depth, j), (depth + 1, i), capacity=float(layer[i, j]))
    last = len(layers) - 1
    for j in range(n):
        graph.add_edge((last, j), "sink", capacity=float(sink_row[j]))
    return [nx.maximum_flow_value(graph, (0, j), "sink") for j in range(n)]


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


@pytest.mark.parametrize(
    ("fusion", "discard_ratio"), [("max", 0.0), ("min", 0.0), ("mean", 0.9), ("max", 0.5)]
)
def test_rollout_head_fusion_and_discard_match_a_hand_computation(vit, fusion: str, discard_ratio: float) -> None:
    """Values, not shapes: max/min head fusion and vit-explain's discard (class token kept)."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    rollout = None
    for a in _manual_attentions(vit, x):
        layer = _layer_reference(a[0].double().numpy(), fusion, discard_ratio, protect=True)
        rollout = layer if rollout is None else layer @ rollout
    expected = torch.from_numpy(rollout[0, 1:]).float().reshape(1, 1, 4, 4)
    expected = F.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    got = AttentionRollout(vit, head_fusion=fusion, discard_ratio=discard_ratio).attribute(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_discard_never_drops_the_class_token_self_entry() -> None:
    a = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(5)) + 0.1
    a[0, 0, 0] = 0.0001  # the smallest entry: the first one discard would choose
    for protect in (True, False):
        lowest = np.argsort(a[0].numpy().reshape(-1), kind="stable")[:4]  # 25% of 16 entries
        if protect:
            lowest = lowest[lowest != 0]
        flat = a[0].double().numpy().reshape(-1).copy()
        flat[lowest] = 0.0
        layer = flat.reshape(4, 4) + np.eye(4)
        expected = torch.from_numpy(layer / layer.sum(-1, keepdims=True)).float()
        got = residual_attention(a, discard_ratio=0.25, protect_class_token=protect)[0]
        torch.testing.assert_close(got, expected)
    kept = residual_attention(a, discard_ratio=0.25, protect_class_token=True)[0]
    dropped = residual_attention(a, discard_ratio=0.25)[0]
    assert kept[0, 0] > dropped[0, 0]  # the class token keeps its own attention


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


@pytest.mark.parametrize("fusion", ["max", "min"])
def test_flow_head_fusion_matches_networkx_on_the_vit(vit, fusion: str) -> None:
    """Class-token model: flow from each patch to the class token, layers fused by hand."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    layers = [_layer_reference(a[0].double().numpy(), fusion) for a in _manual_attentions(vit, x)]
    expected = _flow_reference(layers, layers[-1][0])[1:]
    expected = torch.tensor(expected, dtype=torch.float32).reshape(1, 1, 4, 4)
    expected = F.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    got = AttentionFlow(vit, head_fusion=fusion).attribute(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_flow_default_target_on_avg_pool_is_the_mean_of_patch_rows(vit_registers) -> None:
    """As rollout: no class token -> the readout is the mean of the patch rows, not patch 0."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    prefix = vit_registers.num_prefix_tokens
    layers = [_layer_reference(a[0].double().numpy(), "mean") for a in _manual_attentions(vit_registers, x)]
    sink_row = layers[-1][prefix:].mean(0)
    expected = torch.tensor(_flow_reference(layers, sink_row)[prefix:], dtype=torch.float32).reshape(1, 1, 4, 4)
    expected = F.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    got = AttentionFlow(vit_registers).attribute(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    patch0 = AttentionFlow(vit_registers, target_patch=prefix).attribute(x)
    assert not torch.allclose(got, patch0, atol=1e-4)


def test_attention_methods_need_a_vit(cnn) -> None:
    for cls in (AttentionRollout, AttentionFlow):
        with pytest.raises(ValueError, match="needs a timm Vision Transformer.*Sequential has no attention"):
            cls(cnn)


def test_bad_arguments(vit) -> None:
    with pytest.raises(ValueError, match="head_fusion can be mean, max, min, got 'median'"):
        AttentionRollout(vit, head_fusion="median")
    with pytest.raises(ValueError, match=r"discard_ratio must be a number in \[0, 1\)"):
        AttentionRollout(vit, discard_ratio=1.0)
    with pytest.raises(ValueError, match="target_patch must be None or an int >= 0"):
        AttentionFlow(vit, target_patch=-1)


def test_gradcam_still_works_after_rollout(vit) -> None:
    """fused_attn is restored, and a later gradient method is unaffected."""
    x = torch.randn(1, 3, 32, 32)
    before = GradCAM(vit).explain(x, target_class=0)
    AttentionRollout(vit).explain(x)
    torch.testing.assert_close(GradCAM(vit).explain(x, target_class=0), before)
