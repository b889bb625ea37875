"""Datamodules: every one has ``num_classes``, ``class_names``, ``image_size``, ``mean``, ``std`` and
``sample_images(n) -> (images, targets)``, the first ``n`` validation images with their targets (labels
for classification, box dicts for detection; see :meth:`ImageDataModule.sample_images`).

- ``datamodule.py``: :class:`ImageDataModule`, the base (normalisation, loaders, sample images);
- ``detection_datamodule.py``: :class:`DetectionDataModule`, the base of detection data (batches of
  images + target dicts, :func:`detection_collate`);
- ``shapes_generator.py``: the procedurally generated shapes (with masks, or with boxes);
  ``generated_splits.py``: the seed / seed+1 / seed+2 splits and ``sample_masks`` both shapes datamodules share;
- one file per data source: ``digits.py``, ``shapes.py``, ``imagefolder.py`` (classification),
  ``hf.py`` (Hugging Face ``datasets``), ``shapes_detection.py``, ``coco_folder.py`` (detection);
  ``splits.py``: stratified splits.
"""

from runner.data.coco_folder import CocoFolderDataModule
from runner.data.datamodule import ImageDataModule
from runner.data.detection_datamodule import DetectionDataModule, detection_collate
from runner.data.digits import DigitsDataModule
from runner.data.hf import HFDataModule
from runner.data.imagefolder import ImageFolderDataModule
from runner.data.shapes import ShapesDataModule
from runner.data.shapes_detection import ShapesDetectionDataModule
from runner.data.shapes_generator import SHAPE_CLASSES, boxes_from_masks, generate_shapes, generate_shapes_detection

__all__ = [
    "ImageDataModule",
    "DigitsDataModule",
    "ShapesDataModule",
    "ImageFolderDataModule",
    "HFDataModule",
    "DetectionDataModule",
    "ShapesDetectionDataModule",
    "CocoFolderDataModule",
    "detection_collate",
    "boxes_from_masks",
    "generate_shapes_detection",
    "SHAPE_CLASSES",
    "generate_shapes",
]
