"""Which torchvision detector a model is or holds, its default CAM layer, and loading a checkpoint.

The detector families :func:`explain_detection` knows: two-stage ``GeneralizedRCNN``
(``fasterrcnn_*``, ``maskrcnn_*``, ``keypointrcnn_*``) and one-stage ``RetinaNet``, ``FCOS``, ``SSD``.
A model is a detector itself or holds one at ``.detector``; a path is loaded by the first loader of
the entry-point group ``interpret.checkpoint_loaders`` that can read it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from torch import nn

from interpret.images import resolve_path
from interpret.layers import feature_stages, resolve_layer

__all__ = [
    "CHECKPOINT_LOADERS",
    "DETECTION_METHODS",
    "CAM_METHODS",
    "default_detection_layer",
    "detector_family",
    "find_detector",
    "is_detector",
    "load_checkpoint",
    "resolve_detection_layer",
]

#: the methods :func:`explain_detection` accepts (aliases of the registry are accepted too)
DETECTION_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "integrated_gradients", "smoothgrad")
#: the detection methods that explain a layer (the others explain the input pixels)
CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++")
#: the entry-point group of functions ``loader(path) -> nn.Module`` that load a detector checkpoint
CHECKPOINT_LOADERS = "interpret.checkpoint_loaders"


def _detector_classes() -> dict[str, type]:
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    return {"two_stage": GeneralizedRCNN, "retinanet": RetinaNet, "fcos": FCOS, "ssd": SSD}


def detector_family(detector: nn.Module) -> str | None:
    """The family of a torchvision detector: two_stage, retinanet, fcos, ssd; None for anything else."""
    for name, cls in _detector_classes().items():
        if isinstance(detector, cls):
            return name
    return None


def is_detector(model: Any) -> bool:
    """Whether ``model`` is a torchvision detector explain_detection handles."""
    return isinstance(model, nn.Module) and detector_family(model) is not None


MODEL_HELP = (
    "model must be a torchvision detector (GeneralizedRCNN: fasterrcnn_*/maskrcnn_*; RetinaNet: retinanet_*; "
    "FCOS: fcos_*; SSD: ssd300_*/ssdlite*), an nn.Module holding one at .detector, "
    f"or the path of a checkpoint one of the {CHECKPOINT_LOADERS!r} entry points loads"
)


def find_detector(model: nn.Module) -> tuple[str, nn.Module]:
    """The torchvision detector inside ``model``: ``("", model)`` or ``("detector", model.detector)``.

    Raises:
        TypeError: ``model`` is neither a torchvision detector nor holds one at ``.detector``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{MODEL_HELP}; got {type(model).__name__}")
    if detector_family(model) is not None:
        return "", model
    inner = getattr(model, "detector", None)
    if isinstance(inner, nn.Module) and detector_family(inner) is not None:
        for name, module in model.named_modules():
            if module is inner:
                return name, inner
    raise TypeError(f"{MODEL_HELP}; got {type(model).__name__}, which is not a detector and has no .detector")


def load_checkpoint(path: Any) -> nn.Module:
    """Load a detector checkpoint with the first loader of the ``interpret.checkpoint_loaders``
    entry points that can read it (a package declares ``name = "module:function"``, the function
    taking a path and returning an ``nn.Module``; this project's declares ``vision-runner``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: no installed loader can load it (each loader's error is listed).
    """
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise FileNotFoundError(f"model: no such checkpoint file {str(resolved)!r}")
    loaders = sorted(entry_points(group=CHECKPOINT_LOADERS), key=lambda point: point.name)
    errors = []
    for point in loaders:
        try:
            loader = point.load()
            module = loader(str(resolved))
        except Exception as err:  # noqa: BLE001 - try the next loader, report every failure
            errors.append(f"{point.name} ({point.value}): {type(err).__name__}: {err}")
            continue
        if isinstance(module, nn.Module):
            return module
        errors.append(f"{point.name} ({point.value}): returned {type(module).__name__}, not an nn.Module")
    if not loaders:
        raise ValueError(
            f"model: cannot load {str(resolved)!r}: no loader is installed in the entry-point group "
            f"{CHECKPOINT_LOADERS!r}; load the module yourself and pass it"
        )
    raise ValueError(
        f"model: none of the {CHECKPOINT_LOADERS!r} loaders can load {str(resolved)!r}: " + "; ".join(errors)
        + "; for a torchvision state dict build the detector and call load_state_dict yourself"
    )


# ------------------------------------------------------------------------------ layers
def default_detection_layer(detector: nn.Module) -> str:
    """The ``named_modules()`` name (inside ``detector``) of the layer detection CAMs explain.

    - a backbone with a ``body`` (torchvision's ``BackboneWithFPN``: ResNet, MobileNet, ...; the
      project's ``TimmFPNBackbone``): the last stage before the FPN, i.e. the last of a timm
      ``features_only`` body's ``feature_info`` stages, else the body's last child
      (``backbone.body.layer4``);
    - SSD: the first feature map its head reads, the only one every detection depends on:
      ``backbone.features.0`` of SSDlite's MobileNet extractor (the C4 stage), ``backbone.features``
      (conv4_3) of SSD300's VGG;
    - otherwise the backbone's last ``nn.Conv2d`` outside an ``fpn``/``extra`` module.

    Raises:
        ValueError: no such layer (pass ``target_layer``).
    """
    backbone = getattr(detector, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(detector).__name__} has no backbone module; pass target_layer")
    body = getattr(backbone, "body", None)
    if isinstance(body, nn.Module):
        modules = dict(body.named_modules())
        stages = feature_stages(body)  # a timm features_only model
        if stages:
            last = str(stages[-1]["module"])
            for name in (last, last.replace(".", "_")):  # FeatureListNet flattens "stages.3" to "stages_3"
                if name in modules:
                    return f"backbone.body.{name}"
        children = [name for name, _ in body.named_children()]
        if children:
            return f"backbone.body.{children[-1]}"
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 0:
        # SSD's head reads the output of its first feature block and of every block after it:
        # only that first map is upstream of every detection (a later one misses the boxes of
        # the finer levels: their gradient there is exactly zero)
        if type(backbone).__name__.startswith("SSDLite"):  # iterates its features: hook the first
            return "backbone.features.0"
        return "backbone.features"
    last = None
    for name, module in backbone.named_modules():
        parts = name.split(".")
        if isinstance(module, nn.Conv2d) and not ({"fpn", "extra"} & set(parts)):
            last = name
    if last is None:
        raise ValueError(f"cannot choose a target layer in the backbone of {type(detector).__name__}; pass target_layer")
    return f"backbone.{last}"


def resolve_detection_layer(
    model: nn.Module, prefix: str, detector: nn.Module, target_layer: str | nn.Module | None
) -> tuple[str, nn.Module]:
    if target_layer is None:
        name = default_detection_layer(detector)
        return resolve_layer(model, f"{prefix}.{name}" if prefix else name)
    try:
        return resolve_layer(model, target_layer)
    except ValueError:
        if prefix and isinstance(target_layer, str):  # a name relative to the detector
            try:
                name, module = resolve_layer(detector, target_layer)
                return f"{prefix}.{name}", module
            except ValueError:
                pass
        raise
