from runner.models.classifier import ImageClassifier, create_backbone

__all__ = ["ImageClassifier", "create_backbone"]
