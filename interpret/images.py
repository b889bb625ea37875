"""Images in, tensors out: the one place that reads image files, resolves their paths and turns
PIL images into normalised model inputs.

Relative paths resolve against the current working directory (:func:`resolve_path`). The
project's Hydra runs keep the launch directory as the working directory (``hydra.job.chdir:
false``), so a path typed on the command line means what it says there; pass ``base_dir`` to
resolve against another folder.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PathLike",
    "is_pathlike",
    "load_image",
    "load_images",
    "pil_to_tensor",
    "pils_to_batch",
    "resolve_path",
]

#: ImageNet normalisation, the default of timm models and of this project's datamodules
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

PathLike = str | os.PathLike


def is_pathlike(value: Any) -> bool:
    """Whether ``value`` is a file path (``str`` or ``os.PathLike``)."""
    return isinstance(value, str | os.PathLike)


def resolve_path(path: PathLike, base_dir: PathLike | None = None) -> Path:
    """``~`` expanded; a relative path joined to ``base_dir`` (default: the current directory)."""
    resolved = Path(os.path.expanduser(os.fspath(path)))
    if resolved.is_absolute():
        return resolved
    return Path(base_dir if base_dir is not None else Path.cwd()) / resolved


def load_image(
    path: PathLike, base_dir: PathLike | None = None, what: str = "image", max_side: int | None = None
) -> Image.Image:
    """Read an image file fully into memory (the file is closed afterwards).

    Args:
        path: the file; relative paths resolve with :func:`resolve_path`.
        base_dir: folder relative paths resolve against (default: the current directory).
        what: how the error messages call the argument (e.g. ``"InterpretationCallback.sample_images"``).
        max_side: reduce a picture whose longer side exceeds this many pixels, on load, to fit in
            ``max_side x max_side`` (aspect kept): a JPEG is decoded at 1/2, 1/4 or 1/8 scale
            (PIL's ``draft``) and then resized, so a 10000 x 10000 photo never exists at full size as
            floats; the reduced picture's ``info["original_size"]`` holds the file's ``(width, height)``.
            None: the picture as it is. PIL's decompression-bomb warning is not shown (a
            picture over twice its pixel limit is still refused, with one line).

    Raises:
        FileNotFoundError: no such file (the resolved path is named).
        ValueError: the file exists but is not a readable image (named, with PIL's reason).
    """
    resolved = resolve_path(path, base_dir)
    if not resolved.is_file():
        raise FileNotFoundError(f"{what}: no such image file {str(resolved)!r}")
    if max_side is not None and (not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 1):
        raise ValueError(f"max_side must be an int >= 1 or None, got {max_side!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(resolved) as image:
                if max_side is not None and max(image.size) > max_side:
                    original = image.size
                    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
                    reduced = image.copy()
                    reduced.info["original_size"] = original  # (width, height) of the file
                    return reduced
                image.load()
                return image.copy()
    except Image.DecompressionBombError as err:
        raise ValueError(f"{what}: {str(resolved)!r} is too large to read safely ({err})") from err
    except Exception as err:
        raise ValueError(f"{what}: {str(resolved)!r} is not a readable image ({err})") from err


def load_images(
    paths: Sequence[PathLike], base_dir: PathLike | None = None, what: str = "image", max_side: int | None = None
) -> list[Image.Image]:
    """:func:`load_image` for each path."""
    return [load_image(path, base_dir, what, max_side) for path in paths]


def pil_to_tensor(
    image: Image.Image,
    channels: int | None = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Convert a PIL image to a float ``(C, H, W)`` tensor in [0, 1], then normalise it.

    Args:
        image: the PIL image.
        channels: 1 (converted to ``L``), 3 (``RGB``) or None (keep the image's own bands).
        mean: per-channel mean subtracted after scaling to [0, 1], or None.
        std: per-channel std divided by, or None.
        size: ``(H, W)`` to resize to first (bilinear, PIL), or None to keep the image's size.
    """
    if channels == 1:
        image = image.convert("L")
    elif channels == 3:
        image = image.convert("RGB")
    elif channels is not None:
        raise ValueError(f"a PIL image can be converted to 1 or 3 channels, the model expects {channels}")
    if size is not None and (image.height, image.width) != tuple(size):
        image = image.resize((int(size[1]), int(size[0])), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    if mean is not None and std is not None:
        if tensor.shape[0] == 1 and len(mean) == len(std) == 3:  # RGB statistics, grey image
            mean, std = (sum(mean) / 3.0,), (sum(std) / 3.0,)
        if len(mean) != tensor.shape[0] or len(std) != tensor.shape[0]:
            raise ValueError(
                f"mean/std have {len(mean)}/{len(std)} values for an image with {tensor.shape[0]} channels"
            )
        m = torch.tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
        s = torch.tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
        tensor = (tensor - m) / s
    return tensor


def pils_to_batch(
    images: Sequence[Image.Image],
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """PIL images -> one resized (bilinear), normalised ``(N, C, H, W)`` batch; ``C = len(mean)``."""
    channels = 1 if len(mean) == 1 else 3
    return torch.stack([pil_to_tensor(image, channels, mean, std, size) for image in images])
