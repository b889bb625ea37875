"""Explanation methods for image models (classifiers and detectors), in plain PyTorch.

Every explainer takes any ``nn.Module`` returning logits, explains an image file, a PIL image, a
``(C, H, W)`` tensor or a ``(B, C, H, W)`` batch, returns heatmaps in [0, 1] at the size the model
saw (files and PIL images are resized to the model's input size; optionally maps come back at the
picture's own size), and leaves the model exactly as it found it (training flags,
``requires_grad``, ``.grad``, hooks), also when called under ``torch.no_grad()`` /
``torch.inference_mode()`` or when it raises.

Layout: ``methods/`` (the explainers and their registry), ``targets`` (what is explained),
``tasks/`` (where classification, detection and segmentation differ; :func:`task_for`),
``layers``, ``render``, ``model_state``, ``metrics/``. This package imports neither Lightning
nor Hydra; a detector checkpoint path is loaded through the ``interpret.checkpoint_loaders``
entry points.
"""

from interpret.api import compare_methods, explain_prediction, visualize_batch
from interpret.checks import positive_int
from interpret.features import FeatureVisualizer
from interpret.hooks import HookManager
from interpret.images import IMAGENET_MEAN, IMAGENET_STD, load_image, pil_to_tensor, pils_to_batch, resolve_path
from interpret.layers import default_target_layer, resolve_layer, resolve_normalization, tokens_to_grid
from interpret.methods import (
    AttentionFlow,
    AttentionRollout,
    Explainer,
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradients,
    InvalidImageError,
    Saliency,
    SmoothGrad,
    attention_flow,
    attention_rollout,
    available_methods,
    canonical_method,
    get_explainer,
    method_keywords,
    normalize_maps,
    register_method,
)
from interpret.model_state import frozen_eval, preserve_model_state, preserve_rng_and_modes
from interpret.render import apply_colormap, check_colormap, image_to_uint8, load_font, make_grid, overlay_heatmap
from interpret.targets import ClassTarget, DetectionScore, DetectionTarget, RegionTarget, SegmentationScore
from interpret.tasks import DetectionExplanation, Task, class_name, explain_detection, explain_segmentation, task_for

__all__ = [
    "Task",
    "RegionTarget",
    "DetectionTarget",
    "ClassTarget",
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
    "class_name",
    "positive_int",
    "preserve_rng_and_modes",
    "task_for",
]
