"""Explanation methods for image classifiers, in plain PyTorch.

Every explainer takes any ``nn.Module`` returning logits, explains an image file, a PIL image, a
``(C, H, W)`` tensor or a ``(B, C, H, W)`` batch, returns heatmaps in [0, 1] at the size the model
saw (files and PIL images are resized to the model's input size; optionally maps come back at the
picture's own size), and
leaves the model exactly as it found it (training flags, ``requires_grad``, ``.grad``, hooks),
also when called under ``torch.no_grad()`` / ``torch.inference_mode()`` or when it raises.

This package never imports Lightning, Hydra or the project's ``runner`` at import time (only
``explain_detection`` given a ``.ckpt`` path imports the project's ``ObjectDetector``, then).
"""

from interpret.api import compare_methods, explain_prediction, visualize_batch
from interpret.attention import AttentionFlow, AttentionRollout, attention_flow, attention_rollout
from interpret.base import Explainer, InvalidImageError, frozen_eval, normalize_maps, preserve_model_state
from interpret.detection import DetectionExplanation, DetectionScore, explain_detection
from interpret.features import FeatureVisualizer
from interpret.gradcam import GradCAM, GradCAMPlusPlus
from interpret.hooks import HookManager
from interpret.images import IMAGENET_MEAN, IMAGENET_STD, load_image, pil_to_tensor, pils_to_batch, resolve_path
from interpret.integrated_gradients import IntegratedGradients
from interpret.layers import default_target_layer, resolve_layer, resolve_normalization, tokens_to_grid
from interpret.registry import available_methods, canonical_method, get_explainer, method_keywords, register_method
from interpret.saliency import Saliency
from interpret.segmentation import SegmentationScore, explain_segmentation
from interpret.smoothgrad import SmoothGrad
from interpret.visualize import apply_colormap, check_colormap, image_to_uint8, load_font, make_grid, overlay_heatmap

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AttentionFlow",
    "AttentionRollout",
    "DetectionExplanation",
    "DetectionScore",
    "Explainer",
    "FeatureVisualizer",
    "GradCAM",
    "GradCAMPlusPlus",
    "HookManager",
    "IntegratedGradients",
    "InvalidImageError",
    "Saliency",
    "SegmentationScore",
    "SmoothGrad",
    "apply_colormap",
    "attention_flow",
    "attention_rollout",
    "available_methods",
    "canonical_method",
    "check_colormap",
    "compare_methods",
    "default_target_layer",
    "explain_detection",
    "explain_prediction",
    "explain_segmentation",
    "frozen_eval",
    "get_explainer",
    "image_to_uint8",
    "load_font",
    "load_image",
    "make_grid",
    "method_keywords",
    "normalize_maps",
    "overlay_heatmap",
    "pil_to_tensor",
    "pils_to_batch",
    "preserve_model_state",
    "register_method",
    "resolve_layer",
    "resolve_normalization",
    "resolve_path",
    "tokens_to_grid",
    "visualize_batch",
]
