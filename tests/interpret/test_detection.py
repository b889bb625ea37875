"""explain_detection on real torchvision detectors of each family (random init, small sizes)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.support.tiny_models import tiny_cnn
from PIL import Image
from tests.support.model_state import _assert_same, _messy, _snapshot
from torch import nn
from torchvision.models import detection as tv
from torchvision.models.detection.ssd import SSD

from interpret import GradCAM, GradCAMPlusPlus, explain_detection
from interpret.tasks.detection import DetectionScore, default_detection_layer, detect_with_sources
from interpret.metrics import box_masks, box_pointing_game, random_box_pointing_game

SMALL = {"min_size": 128, "max_size": 160}
SSD_SIZE = 160


def _calibrate(detector: nn.Module) -> nn.Module:
    """BatchNorm statistics of two random images (torch's fresh ones leave a random-init
    MobileNet's class scores independent of the input: every box ties)."""
    norms = [m for m in detector.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average
        norm.train()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        detector([torch.rand(3, 72, 96, generator=generator) for _ in range(2)])
    for norm in norms:
        norm.eval()
    return detector


def _build(family: str) -> nn.Module:
    torch.manual_seed(0)
    if family == "fasterrcnn":
        model = tv.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=4, box_score_thresh=0.0, **SMALL
        )
    elif family == "retinanet":
        model = tv.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, score_thresh=0.0, **SMALL)
    elif family == "fcos":
        model = tv.fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, score_thresh=0.0, **SMALL)
    else:
        model = tv.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4, score_thresh=0.0)
        model.transform.fixed_size = (SSD_SIZE, SSD_SIZE)  # 320 by default: slow for a test
    return _calibrate(model.eval())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these small convolutions run several times faster so on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAMILIES = ["fasterrcnn", "retinanet", "fcos", "ssdlite"]
_CACHE: dict[str, nn.Module] = {}


@pytest.fixture(params=FAMILIES)
def detector(request) -> nn.Module:
    """One detector per family, built once for the module (explanations never change it)."""
    if request.param not in _CACHE:
        _CACHE[request.param] = _build(request.param)
    return _CACHE[request.param]


def _get(family: str) -> nn.Module:
    if family not in _CACHE:
        _CACHE[family] = _build(family)
    return _CACHE[family]


def _image(h: int = 72, w: int = 96, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=generator)


class Holder(nn.Module):
    """A module holding a detector at ``.detector``, as the project's ObjectDetector does."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.class_names = ["background", "circle", "square", "triangle"]


# ------------------------------------------------------------------ the detections themselves
def test_rederived_detections_equal_the_models_own(detector) -> None:
    x = _image()
    with torch.no_grad():
        own = detector([x])[0]
        ours = detect_with_sources(detector, x)
    assert own["boxes"].shape[0] > 3
    assert torch.equal(ours.boxes, own["boxes"])
    assert torch.equal(ours.scores, own["scores"])
    assert torch.equal(ours.labels, own["labels"])
    result = explain_detection(detector, x, detection_threshold=0.0, max_detections=3)
    assert torch.equal(result.boxes, own["boxes"][:3]) and torch.equal(result.labels, own["labels"][:3])
    assert torch.equal(result.scores, own["scores"][:3])
    assert result.maps.shape == (3, 72, 96) and result.combined.shape == (72, 96)
    threshold = float(own["scores"][4])
    above = explain_detection(detector, x, detection_threshold=threshold, max_detections=6)
    count = int((own["scores"] >= threshold).sum())
    assert count >= 5 and len(above) == min(count, 6)
    assert torch.equal(above.scores, own["scores"][: len(above)])


def _class_probabilities(detector: nn.Module, x: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """The detector's class probabilities at the given proposals/anchors, from its own modules."""
    images, _ = detector.transform([x])
    features = detector.backbone(images.tensors)
    if isinstance(detector, tv.FasterRCNN):
        proposals, _ = detector.rpn(images, features)
        heads = detector.roi_heads
        pooled = heads.box_roi_pool(features, [proposals[0][sources]], images.image_sizes)
        return F.softmax(heads.box_predictor(heads.box_head(pooled))[0], -1)
    head = detector.head(list(features.values()))
    logits = head["cls_logits"][0, sources]
    if isinstance(detector, SSD):
        return F.softmax(logits, -1)
    if isinstance(detector, tv.FCOS):
        return torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(head["bbox_ctrness"][0, sources]))
    return torch.sigmoid(logits)


def test_each_detection_is_explained_at_its_own_proposal_or_anchor(detector) -> None:
    """The source found for a box gives back its score and class, and DetectionScore its logit."""
    x = _image()
    result = explain_detection(detector, x, detection_threshold=0.0, max_detections=5)
    with torch.no_grad():
        probabilities = _class_probabilities(detector, x, result.sources)
        rows = torch.arange(len(result))
        torch.testing.assert_close(probabilities[rows, result.labels], result.scores, rtol=1e-5, atol=1e-6)
        output = detect_with_sources(detector, x)
        score = DetectionScore(detector, result.labels, result.sources, output.proposals)
        logits = score(torch.stack([x, x]))
    assert logits.shape == (2, len(result))
    torch.testing.assert_close(logits[0], result.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[1], result.logits, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------- CAMs
@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_gradcam_maps_are_per_detection_and_not_trivial(family) -> None:
    detector = _get(family)
    result = explain_detection(detector, _image(), method="gradcam", detection_threshold=0.0, max_detections=4)
    assert result.method == "gradcam" and result.target_layer == "backbone.body.layer4"
    maps = result.maps
    assert maps.shape == (4, 72, 96) and maps.dtype == torch.float32
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    for i in range(4):
        assert float(maps[i].max()) == pytest.approx(1.0) and float(maps[i].std()) > 0.05
        for j in range(i):
            assert float((maps[i] - maps[j]).abs().max()) > 0.05, (i, j)
    torch.testing.assert_close(result.combined, maps.amax(dim=0))


@pytest.mark.parametrize(("family", "method"), [("fasterrcnn", "gradcam"), ("retinanet", "gradcam++"), ("ssdlite", "gradcam")])
def test_batched_cams_equal_one_backward_per_detection(family, method) -> None:
    """With no resizing or padding (128 x 128 in, 128 x 128 seen), the CAMs equal the project's
    GradCAM/GradCAM++ run on DetectionScore, one copy of the image per detection."""
    detector = _get(family)
    size = SSD_SIZE if family == "ssdlite" else 128
    x = _image(size, size, seed=3)
    result = explain_detection(detector, x, method=method, detection_threshold=0.0, max_detections=3)
    layer = default_detection_layer(detector)
    assert result.target_layer == layer
    with torch.no_grad():
        output = detect_with_sources(detector, x)
    score = DetectionScore(detector, result.labels, result.sources, output.proposals)
    cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
    expected = cls(score, target_layer=f"detector.{layer}").explain(x.expand(3, -1, -1, -1), target_class=[0, 1, 2])
    torch.testing.assert_close(result.maps, expected, rtol=1e-4, atol=1e-4)


def test_target_layer_by_name_relative_to_the_wrapper_or_the_detector() -> None:
    detector = _get("retinanet")
    holder = Holder(detector)
    x = _image()
    auto = explain_detection(holder, x, detection_threshold=0.0, max_detections=2)
    assert auto.target_layer == "detector.backbone.body.layer4"
    assert auto.class_names == ("background", "circle", "square", "triangle")
    bare = explain_detection(detector, x, detection_threshold=0.0, max_detections=2)
    torch.testing.assert_close(auto.maps, bare.maps)
    layer3 = explain_detection(holder, x, detection_threshold=0.0, max_detections=2, target_layer="backbone.body.layer3")
    assert layer3.target_layer == "detector.backbone.body.layer3"
    assert not torch.allclose(layer3.maps, auto.maps)
    with pytest.raises(ValueError, match=r"'backbone.body.layer5' is not a layer.*layer4"):
        explain_detection(detector, x, detection_threshold=0.0, target_layer="backbone.body.layer5")


# --------------------------------------------------------------------------- input methods
@pytest.mark.parametrize(("family", "method", "kwargs"), [
    ("fasterrcnn", "integrated_gradients", {"steps": 4}),
    ("ssdlite", "smoothgrad", {"num_samples": 2}),
    ("fcos", "ig", {"steps": 2, "internal_batch_size": 3}),
])
def test_input_methods_explain_each_detection(family, method, kwargs) -> None:
    detector = _get(family)
    x = _image()
    result = explain_detection(detector, x, method=method, detection_threshold=0.0, max_detections=3, **kwargs)
    assert result.method in ("integrated_gradients", "smoothgrad") and result.target_layer is None
    assert result.maps.shape == (3, 72, 96)
    assert float(result.maps.min()) >= 0.0 and float(result.maps.max()) == pytest.approx(1.0)
    assert float((result.maps[0] - result.maps[1]).abs().max()) > 0.05


def test_smoothgrad_is_reproducible_and_leaves_the_global_rng() -> None:
    detector = _get("ssdlite")
    x = _image()
    state = torch.get_rng_state()
    a = explain_detection(detector, x, method="smoothgrad", detection_threshold=0.0, max_detections=2, num_samples=2)
    b = explain_detection(detector, x, method="smoothgrad", detection_threshold=0.0, max_detections=2, num_samples=2)
    c = explain_detection(detector, x, method="smoothgrad", detection_threshold=0.0, max_detections=2, num_samples=2, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a.maps, b.maps)
    assert not torch.allclose(a.maps, c.maps)


# ------------------------------------------------------------------------------ images in
def test_images_as_pil_file_uint8_batch_or_normalised_tensor(tmp_path) -> None:
    detector = _get("fcos")
    array = (np.random.default_rng(0).integers(0, 5, size=(60, 84, 3)) * 60).astype(np.uint8)
    pixels = torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
    path = tmp_path / "picture.png"
    Image.fromarray(array).save(path)
    reference = explain_detection(detector, pixels, detection_threshold=0.0, max_detections=3)
    variants = {
        "pil": Image.fromarray(array),
        "file": path,
        "str": str(path),
        "uint8": torch.from_numpy(array).permute(2, 0, 1),
        "batch": pixels[None],
    }
    for name, image in variants.items():
        result = explain_detection(detector, image, detection_threshold=0.0, max_detections=3)
        assert torch.equal(result.boxes, reference.boxes), name
        torch.testing.assert_close(result.maps, reference.maps, msg=name)
    quarter = torch.round(pixels * 4) / 4  # exact through (x - 0.5) / 0.25 and back
    plain = explain_detection(detector, quarter, detection_threshold=0.0, max_detections=3)
    normalised = explain_detection(
        detector, (quarter - 0.5) / 0.25, detection_threshold=0.0, max_detections=3, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert torch.equal(plain.boxes, normalised.boxes)
    assert plain.image.shape == (60, 84, 3) and plain.image.dtype == np.uint8


# --------------------------------------------------------------------------- model state
@pytest.mark.parametrize(("family", "method", "kwargs", "mode"), [
    ("fasterrcnn", "gradcam", {}, "plain"),
    ("fasterrcnn", "smoothgrad", {"num_samples": 2}, "no_grad"),
    ("retinanet", "gradcam++", {}, "inference_mode"),
    ("ssdlite", "integrated_gradients", {"steps": 2}, "inference_mode"),
    ("fcos", "gradcam", {}, "no_grad"),
])
def test_the_model_is_left_untouched(family, method, kwargs, mode) -> None:
    holder = Holder(copy.deepcopy(_get(family)))  # its own copy: _messy changes it
    _messy(holder)
    before = _snapshot(holder)
    x = _image()
    if mode == "inference_mode":
        with torch.inference_mode():
            result = explain_detection(holder, x.clone(), method=method, detection_threshold=0.0, max_detections=2, **kwargs)
    elif mode == "no_grad":
        with torch.no_grad():
            result = explain_detection(holder, x, method=method, detection_threshold=0.0, max_detections=2, **kwargs)
    else:
        result = explain_detection(holder, x, method=method, detection_threshold=0.0, max_detections=2, **kwargs)
    assert len(result) == 2
    _assert_same(before, _snapshot(holder))
    assert torch.is_grad_enabled()


def test_the_model_is_left_untouched_after_an_error() -> None:
    holder = Holder(copy.deepcopy(_get("retinanet")))
    _messy(holder)
    before = _snapshot(holder)
    with pytest.raises(RuntimeError, match="do not depend on target_layer"):
        explain_detection(holder, _image(), detection_threshold=0.0, target_layer="detector.head.regression_head.conv")
    _assert_same(before, _snapshot(holder))


# ---------------------------------------------------------------------------------- errors
def test_errors_name_the_argument_and_what_is_allowed() -> None:
    detector = _get("ssdlite")
    x = _image()
    with pytest.raises(TypeError, match="model must be a torchvision detector.*got Sequential"):
        explain_detection(tiny_cnn(), x)
    holder = Holder(detector)
    holder.detector = tiny_cnn()
    with pytest.raises(TypeError, match=r"model must be a torchvision detector.*\.detector"):
        explain_detection(holder, x)
    for bad in (-0.1, 1.5, True, "0.5", None):
        with pytest.raises(ValueError, match="detection_threshold must be a number from 0 to 1"):
            explain_detection(detector, x, detection_threshold=bad)
    for bad in ("saliency", "gradkam", "attention_rollout", 3):
        with pytest.raises(ValueError, match="gradcam, gradcam\\+\\+, integrated_gradients, smoothgrad"):
            explain_detection(detector, x, method=bad)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="max_detections must be an int >= 1"):
            explain_detection(detector, x, max_detections=bad)
    with pytest.raises(ValueError, match="target_layer applies to gradcam and gradcam\\+\\+"):
        explain_detection(detector, x, method="integrated_gradients", target_layer="backbone.features.1")
    with pytest.raises(ValueError, match="takes one image, got a batch of 2"):
        explain_detection(detector, torch.stack([x, x]))
    with pytest.raises(TypeError, match="image must be a file path, a PIL"):
        explain_detection(detector, [x])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        explain_detection(detector, torch.rand(4, 32, 32))
    with pytest.raises(FileNotFoundError, match="model: no such checkpoint"):
        explain_detection("no/such/run.ckpt", x)
    with pytest.raises(ValueError, match="method 'integrated_gradients' takes the keywords"):
        explain_detection(detector, x, method="integrated_gradients", stepz=3, detection_threshold=0.0)
    with pytest.raises(ValueError, match="takes the keyword eps"):
        explain_detection(detector, x, method="gradcam++", steps=3, detection_threshold=0.0)


def test_no_detection_above_the_threshold_warns_and_returns_empty(tmp_path) -> None:
    detector = _get("fcos")
    path = tmp_path / "none.png"
    with pytest.warns(UserWarning, match=r"no detection with a score >= 0.99 \(the best score is 0\.\d+\)"):
        result = explain_detection(detector, _image(), detection_threshold=0.99, save_path=path)
    assert len(result) == 0
    assert result.boxes.shape == (0, 4) and result.maps.shape == (0, 72, 96)
    assert torch.equal(result.combined, torch.zeros(72, 96))
    assert result.save_path == path and Image.open(path).size[0] > 100


def test_save_path_writes_one_panel_per_detection_and_a_combined_view(tmp_path) -> None:
    detector = _get("retinanet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = explain_detection(detector, _image(), detection_threshold=0.0, max_detections=1, save_path=tmp_path / "1.png")
        five = explain_detection(
            detector, _image(), detection_threshold=0.0, max_detections=5, save_path=tmp_path / "sub" / "5.png"
        )
    assert one.save_path == tmp_path / "1.png" and five.save_path == tmp_path / "sub" / "5.png"
    small, large = Image.open(one.save_path), Image.open(five.save_path)
    assert small.format == large.format == "PNG"
    # 2 panels (combined + 1) in one row; 6 panels in 4 columns, 2 rows
    assert large.size[0] > 1.5 * small.size[0] and large.size[1] > 1.5 * small.size[1]
    pixels = np.asarray(large.convert("RGB"))
    assert pixels.std() > 10  # not a blank page


# ------------------------------------------------------------------------- box pointing game
def test_box_pointing_game_hits_misses_tolerance_and_empty_boxes() -> None:
    maps = torch.zeros(4, 224, 224)
    maps[0, 50, 50] = 1  # inside its box
    maps[1, 200, 200] = 1  # far from its box
    maps[2, 50, 75] = 1  # 10 px right of its box: within TorchRay's 15 px
    maps[3, 10, 10] = 1
    boxes = torch.tensor([[40.0, 40.0, 60.0, 60.0], [0.0, 0.0, 30.0, 30.0], [40.0, 40.0, 65.0, 60.0], [5.0, 5.0, 5.0, 9.0]])
    result = box_pointing_game(maps, boxes)
    assert result.scores[:3].tolist() == [1.0, 0.0, 1.0]
    assert torch.isnan(result.scores[3]) and result.excluded == 1
    assert result.mean == pytest.approx(2 / 3)
    assert box_pointing_game(maps, boxes, tolerance=0).scores[2] == 0.0
    # the tolerance scales with the image: 15 px at 224 is about 2 px at 32
    small = torch.zeros(1, 32, 32)
    small[0, 10, 13] = 1
    assert box_pointing_game(small, torch.tensor([[5.0, 5.0, 12.0, 12.0]])).scores.tolist() == [1.0]
    small[0, 10, 15] = 1
    small[0, 10, 13] = 0
    assert box_pointing_game(small, torch.tensor([[5.0, 5.0, 12.0, 12.0]])).scores.tolist() == [0.0]
    masks = box_masks(torch.tensor([[0.5, 0.5, 2.0, 1.5]]), (4, 4))
    assert masks[0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    with pytest.raises(ValueError, match="got 4 maps for 1 boxes"):
        box_pointing_game(maps, boxes[:1])
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\)"):
        box_pointing_game(maps, torch.zeros(4, 3))


def test_random_box_pointing_game_is_the_chance_level() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.randint(0, 48, (400, 2), generator=generator).float()
    corners = corners / 48 * 32
    boxes = torch.cat([corners, corners + 32], dim=1)  # 32 x 32 boxes in 64 x 64: a quarter of the pixels
    chance = random_box_pointing_game(boxes, (64, 64), tolerance=0).mean
    assert 0.17 < chance < 0.33
    again = random_box_pointing_game(boxes, (64, 64), tolerance=0)
    assert again.mean == chance  # seeded
    assert random_box_pointing_game(boxes, (64, 64)).mean > chance  # tolerance widens the target


def test_box_pointing_game_of_an_explanation() -> None:
    result = explain_detection(_get("fcos"), _image(), detection_threshold=0.0, max_detections=4)
    boxes = result.boxes.clone()
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 2)  # random-init boxes can be flat
    scores = box_pointing_game(result.maps, boxes).scores
    assert scores.shape == (4,) and set(scores.tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------- the project's detector
def test_the_projects_object_detector_and_its_checkpoint(tmp_path) -> None:
    """runner.models.ObjectDetector (timm body + FPN + FCOS at .detector), as a module and as a .ckpt path."""
    import lightning.pytorch as pl

    from runner.models.detector import ObjectDetector

    torch.manual_seed(0)
    module = ObjectDetector(backbone="resnet18", num_classes=3, image_size=64, score_thresh=0.0).eval()
    path = tmp_path / "detector.ckpt"
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "pytorch-lightning_version": pl.__version__},
        path,
    )
    x = _image(64, 64)
    with torch.no_grad():
        own = module([x])[0]
    direct = explain_detection(module, x, detection_threshold=0.0, max_detections=3)
    assert direct.target_layer == "detector.backbone.body.layer3"  # the last stage of out_indices (1, 2, 3)
    assert torch.equal(direct.boxes, own["boxes"][:3]) and torch.equal(direct.scores, own["scores"][:3])
    assert float(direct.maps.amax(dim=(1, 2)).max()) == pytest.approx(1.0)
    for given in (path, str(path)):
        loaded = explain_detection(given, x, detection_threshold=0.0, max_detections=3)
        assert torch.equal(loaded.boxes, direct.boxes)
        torch.testing.assert_close(loaded.maps, direct.maps)
    other = tmp_path / "detector.pth"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=r"model: a path must be a \.ckpt checkpoint"):
        explain_detection(other, x)
