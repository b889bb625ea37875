"""How good is an explanation: faithfulness, robustness, localisation and sanity metrics.

Plain PyTorch, batched (every metric takes a chunk-size argument and never runs one pixel or one
image at a time). Every metric takes ``(model, images, maps, targets)`` first: ``images`` are
normalised model inputs ``(B, C, H, W)``, ``maps`` saliency ``(B, H, W)`` (higher = more
important), ``targets`` the ``(B,)`` classes explained (None: the predicted ones).

- :func:`deletion_insertion`, :func:`deletion`, :func:`insertion`: RISE curves and AUCs.
- :func:`max_sensitivity`: the explanation's change under uniform pixel noise (Yeh et al.).
- :func:`pointing_game`, :func:`energy_in_mask`, :func:`mask_iou`, :func:`localisation`: against object masks.
- :func:`box_pointing_game`, :func:`random_box_pointing_game`: a detection's map against its box, and chance.
- :func:`model_randomisation`: Adebayo et al.'s cascading randomisation sanity check.
- :class:`RandomMap`, :class:`CentreGaussianMap`: baselines scored beside the methods.
- :func:`evaluate_methods`: all of it for several methods, as a table with 95% intervals.
- :func:`training_scores` (:mod:`.training`): the cheap set a callback scores while a model trains
  (few-step deletion/insertion, mask metrics, :func:`drift`, :func:`concentration`,
  :func:`location_agreement`) and :func:`shortcut_evidence`, the shortcut alarm's test.
"""

from interpret.metrics.baselines import CentreGaussianMap, RandomMap, centre_gaussian_map, random_map
from interpret.metrics.boxes import box_masks, box_pointing_game, random_box_pointing_game
from interpret.metrics.deletion_insertion import (
    CurveResult,
    blurred,
    deletion,
    deletion_insertion,
    insertion,
    pixel_counts,
    trapezoid_auc,
)
from interpret.metrics.evaluate import DIRECTIONS, MethodTable, MetricSummary, bootstrap_interval, evaluate_methods
from interpret.metrics.localisation import LocalisationResult, energy_in_mask, localisation, mask_iou, pointing_game
from interpret.metrics.randomisation import RandomisationResult, default_randomisation_layers, model_randomisation, spearman
from interpret.metrics.sensitivity import max_sensitivity
from interpret.metrics.training import (
    TRAINING_METRICS,
    concentration,
    drift,
    location_agreement,
    shortcut_evidence,
    training_scores,
)

__all__ = [
    "DIRECTIONS",
    "CentreGaussianMap",
    "CurveResult",
    "LocalisationResult",
    "MethodTable",
    "MetricSummary",
    "RandomMap",
    "RandomisationResult",
    "TRAINING_METRICS",
    "blurred",
    "bootstrap_interval",
    "box_masks",
    "box_pointing_game",
    "centre_gaussian_map",
    "concentration",
    "default_randomisation_layers",
    "deletion",
    "deletion_insertion",
    "drift",
    "energy_in_mask",
    "evaluate_methods",
    "insertion",
    "localisation",
    "location_agreement",
    "mask_iou",
    "max_sensitivity",
    "model_randomisation",
    "pixel_counts",
    "pointing_game",
    "random_box_pointing_game",
    "random_map",
    "shortcut_evidence",
    "spearman",
    "trapezoid_auc",
    "training_scores",
]
