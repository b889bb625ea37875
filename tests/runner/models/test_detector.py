"""ObjectDetector without a Trainer: both heads, any timm backbone, what training_step returns."""

from __future__ import annotations

import pytest
import torch

from runner.data import ShapesDetectionDataModule
from runner.models import ObjectDetector


@pytest.fixture(scope="module")
def batch():
    dm = ShapesDetectionDataModule(num_train=4, num_val=2, num_test=2, batch_size=4, image_size=64, seed=0)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


@pytest.mark.parametrize(("head", "backbone", "out_indices"), [("fcos", "resnet18", (1, 2, 3)),
                                                               ("retinanet", "mobilenetv3_small_100", (2, 3, 4))])
def test_both_heads_on_any_backbone_train_and_detect(batch, head: str, backbone: str, out_indices) -> None:
    torch.manual_seed(0)
    model = ObjectDetector(backbone=backbone, num_classes=4, image_size=64, head=head, out_indices=out_indices)
    assert model.detector.transform.min_size == (64,) and model.detector.transform.max_size == 64
    assert list(model.detector.transform.image_mean) == list(model.data_config["mean"])
    model.train()
    kept, handle = model._pooled_features()
    losses = model.detector(batch[0], batch[1])
    handle.remove()
    loss = sum(losses.values())
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.detector.backbone.body.parameters())
    assert kept and kept[0].shape[0] == 4  # the last backbone stage, pooled into training_step's "features"
    model.eval()
    with torch.no_grad():
        detections = model(torch.stack(batch[0]))
    assert len(detections) == 4 and set(detections[0]) == {"boxes", "scores", "labels"}
    assert all(d["labels"].numel() == 0 or int(d["labels"].max()) < 4 for d in detections)


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="model.head"):
        ObjectDetector(num_classes=4, head="yolo")
    with pytest.raises(ValueError, match="model.num_classes"):
        ObjectDetector(num_classes=None)
    with pytest.raises(ValueError, match="model.backbone"):
        ObjectDetector(backbone="resnet181", num_classes=4)
    with pytest.raises(ValueError, match="model.backbone: timm has no pretrained tag"):
        ObjectDetector(backbone="resnet18.bogus", num_classes=4, pretrained=True)


def test_fine_tune_the_backbone_from_a_classifier_checkpoint(tmp_path) -> None:
    """A classifier checkpoint of this project fills the detector's timm stages (its head has no place there)."""
    from runner.models import ImageClassifier

    torch.manual_seed(1)
    classifier = ImageClassifier(backbone="resnet18", num_classes=3, image_size=64)
    path = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": classifier.state_dict(), "hyper_parameters": dict(classifier.hparams)}, path)
    detector = ObjectDetector(backbone="resnet18", num_classes=4, image_size=64, out_indices=(1, 2),
                              pretrained=True, weights_path=str(path))
    body = detector.detector.backbone.body.state_dict()
    source = classifier.backbone.state_dict()
    assert torch.equal(body["layer2.1.conv2.weight"], source["layer2.1.conv2.weight"])
    assert torch.equal(body["conv1.weight"], source["conv1.weight"])
    fresh = ObjectDetector(backbone="resnet18", num_classes=4, image_size=64, out_indices=(1, 2))
    assert not torch.equal(fresh.detector.backbone.body.state_dict()["conv1.weight"], source["conv1.weight"])


def test_interpretation_callback_refuses_a_classification_method_on_a_detector() -> None:
    import lightning.pytorch as pl

    from callbacks import InterpretationCallback

    dm = ShapesDetectionDataModule(num_train=4, num_val=2, num_test=2, batch_size=2, image_size=64, seed=0)
    model = ObjectDetector(num_classes=4, image_size=64, out_indices=(1, 2))
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[InterpretationCallback(method="saliency", num_samples=2)])
    with pytest.raises(ValueError, match="on a detector.*gradcam"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 0  # refused at setup, before training
