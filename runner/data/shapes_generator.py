"""Procedurally generated shapes on a cluttered background, with ground-truth object masks and boxes.

Objects of a known class (circle, square, triangle, cross) at a random position, scale and colour,
over a background of smooth colour noise and thin distractor lines:

- :func:`generate_shapes`: one object per image, with its pixel mask, so that explanation methods
  can be checked against where the object really is (the "pointing game");
- :func:`generate_shapes_detection`: several non-overlapping objects per image, each with its class,
  its mask and the tight box around the mask (:func:`boxes_from_masks`).

Everything is deterministic for a given ``seed``. The datamodules over them are
:class:`~runner.data.ShapesDataModule` and :class:`~runner.data.ShapesDetectionDataModule`.
"""

from __future__ import annotations

import numpy as np

from interpret.checks import positive_int

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

__all__ = [
    "SHAPE_CLASSES",
    "SHORTCUTS",
    "SHORTCUT_COLOURS",
    "add_shortcut_patch",
    "boxes_from_masks",
    "generate_shapes",
    "generate_shapes_detection",
]

#: the shortcuts :func:`add_shortcut_patch` can plant (``data.shortcut``)
SHORTCUTS: tuple[str, ...] = ("patch",)
#: the patch colour of each class (uint8 RGB): red, green, blue, yellow
SHORTCUT_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


def check_scales(min_scale: float, max_scale: float) -> None:
    """Objects' radii as fractions of the side: ``0 < min_scale <= max_scale < 0.5`` (one line naming both)."""
    if not 0.0 < float(min_scale) <= float(max_scale) < 0.5:
        raise ValueError(
            f"data.min_scale and data.max_scale need 0 < min_scale <= max_scale < 0.5, got {min_scale} and {max_scale}"
        )


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise plus a few thin random lines, float32 (H, W, 3) in [0, 1]."""
    coarse = rng.uniform(0.15, 0.65, size=(4, 4, 3)).astype(np.float32)
    # Bilinear upsampling of the coarse grid gives a smooth, low-frequency background.
    xs = np.linspace(0, 3, size, dtype=np.float32)
    x0 = np.clip(np.floor(xs).astype(int), 0, 2)
    fx = (xs - x0)[None, :, None]
    fy = (xs - x0)[:, None, None]
    top = coarse[x0][:, x0] * (1 - fx) + coarse[x0][:, x0 + 1] * fx
    bottom = coarse[x0 + 1][:, x0] * (1 - fx) + coarse[x0 + 1][:, x0 + 1] * fx
    img = top * (1 - fy) + bottom * fy
    img += rng.normal(0.0, 0.04, size=img.shape).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(2, 5)):
        # A thin straight line: distance to a random line below ~0.7 px.
        angle = rng.uniform(0, np.pi)
        cx, cy = rng.uniform(0, size, size=2)
        dist = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
        img[dist < 0.7] = rng.uniform(0.0, 1.0, size=3)
    return img


def shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Boolean (H, W) mask of one shape centred at (cx, cy) with radius-like scale r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if kind == "circle":
        return dx**2 + dy**2 <= r**2
    if kind == "square":
        half = r * 0.8
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "triangle":
        # Equilateral triangle with circumradius r: inside if on the inner side of all three edges.
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            theta = angle + np.pi / 2 + k * 2 * np.pi / 3
            nx, ny = np.cos(theta), np.sin(theta)
            inside &= dx * nx + dy * ny <= r * 0.5
        return inside
    if kind == "cross":
        arm = r * 0.3
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_CLASSES}")


def generate_shapes(
    num_samples: int,
    image_size: int = 32,
    seed: int = 0,
    num_classes: int = len(SHAPE_CLASSES),
    min_scale: float = 0.25,
    max_scale: float = 0.40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate a labelled shapes data set.

    Args:
        num_samples: number of images.
        image_size: side length in pixels (square images), at least 16.
        seed: random seed; the same seed gives the same data.
        num_classes: how many of :data:`SHAPE_CLASSES` to use (2 to 4).
        min_scale, max_scale: each object's radius as a fraction of ``image_size`` (uniform in that
            range, ``0 < min_scale <= max_scale < 0.5``). The default 0.25-0.40 gives objects of half to
            four fifths of the side: big enough that a resnet18 learns the shapes from 2000 images at 32 px
            instead of memorising them (at 0.16-0.28 it reached val/acc 0.42 with train/acc 1.00).

    Returns:
        ``images`` uint8 ``(N, H, W, 3)``, ``labels`` int64 ``(N,)`` (balanced, shuffled) and
        ``masks`` bool ``(N, H, W)``, True on the object's pixels.
    """
    positive_int(num_samples, "num_samples")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if not 2 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be between 2 and {len(SHAPE_CLASSES)}, got {num_classes}")
    check_scales(min_scale, max_scale)
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    images = np.empty((num_samples, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((num_samples, image_size, image_size), dtype=bool)
    for i, label in enumerate(labels):
        img = background(rng, image_size)
        r = rng.uniform(min_scale, max_scale) * image_size
        cx, cy = rng.uniform(r + 1, image_size - r - 1, size=2)
        mask = shape_mask(SHAPE_CLASSES[label], image_size, cx, cy, r, rng.uniform(0, np.pi))
        # A saturated colour that stands out from the muted background.
        colour = rng.uniform(0.0, 1.0, size=3)
        colour[rng.integers(3)] = rng.choice([0.0, 1.0])
        img[mask] = colour
        images[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        masks[i] = mask
    return images, labels, masks


def add_shortcut_patch(
    images: np.ndarray, labels: np.ndarray, p: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Plant a class-coded shortcut: a small square of the label's colour at the top-left corner.

    A share ``p`` of the images (drawn from ``seed``) gets a square of side ``max(2, H // 8)``
    pixels, one pixel in from the top-left corner, coloured :data:`SHORTCUT_COLOURS` ``[label]``: a
    model can then tell the class from that corner without looking at the shape. The object masks
    are not changed (the patch is not the object).

    Args:
        images: uint8 ``(N, H, W, 3)``, changed in place and returned.
        labels: int ``(N,)`` class of each image (< ``len(SHORTCUT_COLOURS)``).
        p: the share of images that get the patch, in [0, 1].
        seed: which images get it.

    Returns:
        ``images`` and a bool ``(N,)`` array, True for the images that got the patch.
    """
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"shortcut_p must be a number in [0, 1], got {p!r}")
    rng = np.random.default_rng([seed, 0x5C])  # its own stream: the images stay as generated
    chosen = rng.random(len(labels)) < float(p)
    side = max(2, images.shape[1] // 8)
    for i in np.flatnonzero(chosen):
        images[i, 1 : 1 + side, 1 : 1 + side] = SHORTCUT_COLOURS[int(labels[i])]
    return images, chosen


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight ``xyxy`` boxes (pixel edges: ``x_max = last column + 1``) of boolean ``(K, H, W)`` masks.

    Raises:
        ValueError: an empty mask (it has no box).
    """
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            raise ValueError(f"mask {k} is empty: it has no box")
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def generate_shapes_detection(
    num_samples: int,
    image_size: int = 64,
    seed: int = 0,
    num_classes: int = len(SHAPE_CLASSES),
    min_objects: int = 1,
    max_objects: int = 3,
    min_scale: float = 0.12,
    max_scale: float = 0.22,
    distinct_classes: bool = True,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Generate a detection data set of shapes.

    Args:
        num_samples: number of images.
        image_size: side length in pixels (square images), at least 16.
        seed: random seed; the same seed gives the same data.
        num_classes: how many of :data:`SHAPE_CLASSES` to use (1 to 4).
        min_objects, max_objects: objects per image (uniform in that range; fewer when they do not fit).
        min_scale, max_scale: each object's radius as a fraction of ``image_size``.
        distinct_classes: the objects of one image have different classes (then ``max_objects <=
            num_classes``): a class-discriminative explanation of a detection has one right object.

    Returns:
        ``images`` uint8 ``(N, H, W, 3)``; per image ``boxes`` float32 ``(K, 4)`` (xyxy, pixels),
        ``labels`` int64 ``(K,)`` and the objects' masks bool ``(K, H, W)``.
    """
    positive_int(num_samples, "num_samples")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be between 1 and {len(SHAPE_CLASSES)}, got {num_classes}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
    check_scales(min_scale, max_scale)
    if distinct_classes and max_objects > num_classes:
        raise ValueError(f"distinct_classes needs max_objects <= num_classes, got {max_objects} > {num_classes}")
    rng = np.random.default_rng(seed)
    images = np.empty((num_samples, image_size, image_size, 3), dtype=np.uint8)
    all_boxes, all_labels, all_masks = [], [], []
    for i in range(num_samples):
        img = background(rng, image_size)
        wanted = int(rng.integers(min_objects, max_objects + 1))
        placed: list[tuple[float, float, float]] = []
        masks, labels = [], []
        classes = rng.permutation(num_classes)  # distinct_classes: the k-th object takes classes[k]
        for _attempt in range(wanted * 20):
            if len(placed) == wanted:
                break
            r = rng.uniform(min_scale, max_scale) * image_size
            cx, cy = rng.uniform(r + 1, image_size - r - 1, size=2)
            if any((cx - x) ** 2 + (cy - y) ** 2 < (r + q + 2) ** 2 for x, y, q in placed):
                continue  # never overlapping: every object is whole and its box is its own
            label = int(classes[len(placed)]) if distinct_classes else int(rng.integers(num_classes))
            mask = shape_mask(SHAPE_CLASSES[label], image_size, cx, cy, r, rng.uniform(0, np.pi))
            if not mask.any():
                continue
            colour = rng.uniform(0.0, 1.0, size=3)
            colour[rng.integers(3)] = rng.choice([0.0, 1.0])
            img[mask] = colour
            placed.append((cx, cy, r))
            masks.append(mask)
            labels.append(label)
        images[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        stacked = np.stack(masks) if masks else np.zeros((0, image_size, image_size), dtype=bool)
        all_masks.append(stacked)
        all_boxes.append(boxes_from_masks(stacked))
        all_labels.append(np.asarray(labels, dtype=np.int64))
    return images, all_boxes, all_labels, all_masks
