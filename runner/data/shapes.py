"""Procedurally generated shapes on a cluttered background, with ground-truth object masks.

Each image holds one object of a known class (circle, square, triangle, cross) at a random
position, scale and colour, over a background of smooth colour noise and thin distractor
lines. The object's pixel mask is returned with every image so that explanation methods can
be checked against where the object really is (the "pointing game").

Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

__all__ = ["SHAPE_CLASSES", "generate_shapes"]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
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


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate a labelled shapes data set.

    Args:
        num_samples: number of images.
        image_size: side length in pixels (square images), at least 16.
        seed: random seed; the same seed gives the same data.
        num_classes: how many of :data:`SHAPE_CLASSES` to use (2 to 4).

    Returns:
        ``images`` uint8 ``(N, H, W, 3)``, ``labels`` int64 ``(N,)`` (balanced, shuffled) and
        ``masks`` bool ``(N, H, W)``, True on the object's pixels.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if not 2 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be between 2 and {len(SHAPE_CLASSES)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    images = np.empty((num_samples, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((num_samples, image_size, image_size), dtype=bool)
    for i, label in enumerate(labels):
        img = _background(rng, image_size)
        r = rng.uniform(0.16, 0.28) * image_size
        cx, cy = rng.uniform(r + 1, image_size - r - 1, size=2)
        mask = _shape_mask(SHAPE_CLASSES[label], image_size, cx, cy, r, rng.uniform(0, np.pi))
        # A saturated colour that stands out from the muted background.
        colour = rng.uniform(0.0, 1.0, size=3)
        colour[rng.integers(3)] = rng.choice([0.0, 1.0])
        img[mask] = colour
        images[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        masks[i] = mask
    return images, labels, masks
