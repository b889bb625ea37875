"""``explain.py``'s pipeline: explain a trained checkpoint with heatmaps, scores and a manifest.

- :mod:`~runner.explain.inputs`: every key of ``conf/explain.yaml``, checked before anything loads;
- :mod:`~runner.explain.checkpoint`: ``ckpt_path`` -> a checkpoint file -> the rebuilt model;
- :mod:`~runner.explain.model`: the model with its datamodule, normalisation and input size;
- :mod:`~runner.explain.phases`: what a task does in each phase, chosen by ``interpret.task_for``;
- :mod:`~runner.explain.classification`, :mod:`~runner.explain.detection`: each task's phases;
- :mod:`~runner.explain.writer`: where the files go (names from :mod:`runner.artifacts`);
- :mod:`~runner.explain.pipeline`: :func:`explain` (the phases in order) and :func:`run`.
"""

from interpret.metrics.boxes import pointing_game_on_boxes
from runner.explain.checkpoint import find_checkpoint, load_checkpoint_model, sha256_of
from runner.explain.inputs import ExplainInputs, check_inputs
from runner.explain.model import LoadedModel, load_model
from runner.explain.phases import Phases, phases_for
from runner.explain.pipeline import explain, run

__all__ = [
    "ExplainInputs",
    "LoadedModel",
    "Phases",
    "check_inputs",
    "explain",
    "find_checkpoint",
    "load_checkpoint_model",
    "load_model",
    "phases_for",
    "pointing_game_on_boxes",
    "run",
    "sha256_of",
]
