from runner.models.classifier import ImageClassifier, create_backbone
from runner.models.detector import ObjectDetector

__all__ = ["ImageClassifier", "ObjectDetector", "create_backbone"]
