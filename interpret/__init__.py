"""Explanation methods for image classifiers, in plain PyTorch.

Every explainer takes any ``nn.Module`` returning logits, explains a PIL image, a ``(C, H, W)``
tensor or a ``(B, C, H, W)`` batch, returns heatmaps in [0, 1] at the input's resolution, and
leaves the model exactly as it found it (training flags, ``requires_grad``, ``.grad``, hooks),
also when called under ``torch.no_grad()`` / ``torch.inference_mode()`` or when it raises.

This package never imports Lightning, Hydra or the project's ``runner``.
"""

from interpret.api import compare_methods, explain_prediction, visualize_batch
from interpret.attention import AttentionFlow, AttentionRollout, attention_flow, attention_rollout
from interpret.base import Explainer, InvalidImageError, normalize_maps, preserve_model_state
from interpret.gradcam import GradCAM, GradCAMPlusPlus
from interpret.hooks import HookManager
from interpret.integrated_gradients import IntegratedGradients
from interpret.layers import default_target_layer, resolve_layer, resolve_normalization, tokens_to_grid
from interpret.registry import available_methods, get_explainer, register_method
from interpret.saliency import Saliency
from interpret.smoothgrad import SmoothGrad
from interpret.visualize import apply_colormap, image_to_uint8, make_grid, overlay_heatmap

__all__ = [
    "AttentionFlow",
    "AttentionRollout",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "HookManager",
    "IntegratedGradients",
    "InvalidImageError",
    "Saliency",
    "SmoothGrad",
    "apply_colormap",
    "attention_flow",
    "attention_rollout",
    "available_methods",
    "compare_methods",
    "default_target_layer",
    "explain_prediction",
    "get_explainer",
    "image_to_uint8",
    "make_grid",
    "normalize_maps",
    "overlay_heatmap",
    "preserve_model_state",
    "register_method",
    "resolve_layer",
    "resolve_normalization",
    "tokens_to_grid",
    "visualize_batch",
]
