"""Tasks: the one place where classification and detection (and segmentation) differ.

:func:`task_for` decides once per model which :class:`Task` explains it; callers (callbacks,
scripts, reports) ask the task for its methods, default CAM layer, sample explanation and tile
drawing instead of inspecting the model themselves.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from interpret.tasks.base import SampleRequest, SampleResult, Task, class_name, class_names_of
from interpret.tasks.classification import ClassificationTask
from interpret.tasks.detection import DetectionExplanation, DetectionTask, explain_detection
from interpret.detectors import DETECTION_METHODS, find_detector, is_detector
from interpret.tasks.segmentation import SegmentationExplanation, explain_segmentation, pixel_entropy

__all__ = [
    "DETECTION_METHODS",
    "ClassificationTask",
    "DetectionExplanation",
    "DetectionTask",
    "SampleRequest",
    "SampleResult",
    "SegmentationExplanation",
    "TASKS",
    "Task",
    "class_name",
    "class_names_of",
    "explain_detection",
    "explain_segmentation",
    "find_detector",
    "is_detector",
    "pixel_entropy",
    "task_for",
]

#: the tasks a model may declare with a ``task`` attribute
TASKS: dict[str, type[Task]] = {"classification": ClassificationTask, "detection": DetectionTask}


def task_for(model: Any) -> Task:
    """The task that explains ``model``, decided once.

    A model may declare it (``model.task = "classification"`` or ``"detection"``); otherwise a
    torchvision detector, or a module holding one at ``.detector``, is detection; anything else
    is classification.

    Raises:
        ValueError: ``model.task`` names no known task.
    """
    declared = getattr(model, "task", None)
    if isinstance(declared, str):
        if declared not in TASKS:
            raise ValueError(f"model.task can be {', '.join(TASKS)}, got {declared!r} ({type(model).__name__})")
        return TASKS[declared]()
    if isinstance(model, nn.Module):
        try:
            find_detector(model)
        except TypeError:
            pass
        else:
            return DetectionTask()
    return ClassificationTask()
