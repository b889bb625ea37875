"""The LightningModules of this project: an image classifier and an object detector on timm backbones.

- :mod:`runner.models.module`: :class:`TaskModule`, what both share (optimizer, scheduler horizon,
  best-metric restore, the ``task`` they expose);
- :mod:`runner.models.backbone`: timm backbones by name and the one ``model.weights_path`` loader;
- :mod:`runner.models.classifier`, :mod:`runner.models.detector`: the two models;
- :mod:`runner.models.detector_checkpoint`: a detector ``.ckpt`` -> module, for ``interpret``'s
  ``interpret.checkpoint_loaders`` entry point.
"""

from runner.models.backbone import create_backbone
from runner.models.classifier import ImageClassifier
from runner.models.detector import ObjectDetector
from runner.models.module import TaskModule

__all__ = ["ImageClassifier", "ObjectDetector", "TaskModule", "create_backbone"]
