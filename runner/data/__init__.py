"""Datamodules: every one has ``num_classes``, ``class_names``, ``image_size``, ``mean``, ``std``
and ``sample_images(n)`` (the first ``n`` validation images with labels)."""

from runner.data.base import ImageDataModule
from runner.data.digits import DigitsDataModule
from runner.data.imagefolder import ImageFolderDataModule
from runner.data.shapes import SHAPE_CLASSES, generate_shapes
from runner.data.shapes_datamodule import ShapesDataModule
from runner.data.detection import DetectionDataModule, detection_collate
from runner.data.shapes_detection import ShapesDetectionDataModule, generate_shapes_detection
from runner.data.coco_folder import CocoFolderDataModule

__all__ = [
    "ImageDataModule",
    "DigitsDataModule",
    "ShapesDataModule",
    "ImageFolderDataModule",
    "DetectionDataModule",
    "ShapesDetectionDataModule",
    "CocoFolderDataModule",
    "detection_collate",
    "generate_shapes_detection",
    "SHAPE_CLASSES",
    "generate_shapes",
]
