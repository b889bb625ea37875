"""What each task does in each phase of the explain pipeline, and which task a model has.

The pipeline (:func:`runner.explain.pipeline.explain`) is the same for every task; where
classification and detection differ, it calls the :class:`Phases` of the model's task, chosen by
``interpret.task_for(model)`` (:func:`phases_for`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from runner.explain.classification import ClassificationPhases
from runner.explain.detection import DetectionPhases
from runner.explain.inputs import ExplainInputs
from runner.explain.model import LoadedModel

__all__ = ["PHASES", "Phases", "phases_for"]


class Phases(Protocol):
    """One task's part of every phase; ``samples`` and each method's result are the task's own types."""

    name: str

    def check(self, inputs: ExplainInputs, loaded: LoadedModel) -> None:
        """Refuse what this task cannot do with these inputs, before anything is explained."""

    def samples(self, inputs: ExplainInputs, loaded: LoadedModel, pictures: list[Image.Image]) -> Any:
        """The images to explain: the given pictures, else the run's sample images."""

    def explain(self, method: str, samples: Any, inputs: ExplainInputs, loaded: LoadedModel) -> Any:
        """``method``'s maps of every sample."""

    def count(self, result: Any) -> str:
        """What one method's result holds, for the log (``4 image(s)``)."""

    def write(self, output_dir: Path, samples: Any, results: dict[str, Any], inputs: ExplainInputs,
              loaded: LoadedModel) -> list[dict[str, Any]]:
        """Overlays, grid and ``maps.npz``; the manifest's ``images`` entries."""

    def score(self, output_dir: Path, samples: Any, inputs: ExplainInputs, loaded: LoadedModel) -> dict[str, float]:
        """``metrics.csv`` and a table in the terminal; the seconds each method took."""

    def features(self, output_dir: Path, samples: Any, inputs: ExplainInputs, loaded: LoadedModel) -> list[str]:
        """Feature-map figures; the files written."""

    def manifest(self, samples: Any, inputs: ExplainInputs, loaded: LoadedModel, images: list[dict[str, Any]],
                 runtimes: dict[str, float], metric_seconds: dict[str, float] | None,
                 feature_files: list[str]) -> dict[str, Any]:
        """The manifest's keys after the provenance."""


#: the explain phases of each task of ``interpret.task_for``
PHASES: dict[str, type[Phases]] = {"classification": ClassificationPhases, "detection": DetectionPhases}


def phases_for(model: torch.nn.Module) -> Phases:
    """The explain phases of ``model``'s task (``interpret.task_for(model)``).

    Raises:
        ValueError: the model's task (e.g. segmentation) is not one ``explain.py`` explains.
    """
    from interpret.tasks import task_for

    task = task_for(model)
    if task.name not in PHASES:
        raise ValueError(f"explain.py explains {', '.join(PHASES)} checkpoints, got a {task.name} model")
    return PHASES[task.name](task)
