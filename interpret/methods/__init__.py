"""Explanation methods; each works on any model whose output is ``(B, K)`` scores and never
branches on the task (tasks adapt the model through :mod:`interpret.targets`)."""

from interpret.methods.attention import AttentionFlow, AttentionRollout, attention_flow, attention_rollout
from interpret.methods.base import Explainer, InvalidImageError, normalize_maps
from interpret.methods.gradcam import GradCAM, GradCAMPlusPlus
from interpret.methods.integrated_gradients import IntegratedGradients
from interpret.methods.registry import available_methods, canonical_method, get_explainer, method_keywords, register_method
from interpret.methods.saliency import Saliency
from interpret.methods.smoothgrad import SmoothGrad

__all__ = [
    "AttentionFlow",
    "AttentionRollout",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "IntegratedGradients",
    "InvalidImageError",
    "Saliency",
    "SmoothGrad",
    "attention_flow",
    "attention_rollout",
    "available_methods",
    "canonical_method",
    "get_explainer",
    "method_keywords",
    "normalize_maps",
    "register_method",
]
