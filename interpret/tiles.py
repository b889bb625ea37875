"""The tiles a person reads: a sample as picture | heatmap with its colour bar | overlay, signed maps
in a diverging colormap, object outlines and class-colour legends (RGB uint8 arrays).

:mod:`interpret.render` holds the primitives (colormaps, boxes, grids); the tasks draw their tiles
from both (:meth:`interpret.tasks.base.Task.render_samples`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from interpret.render import (
    _fit,
    _heatmap_array,
    _resize_heatmap,
    apply_colormap,
    dashed_rectangle,
    draw_boxes,
    image_to_uint8,
    load_font,
    upscale,
)

__all__ = [
    "OUTLINE_COLOUR",
    "SIGNED_COLORMAP",
    "colour_bar",
    "heat_overlay",
    "legend_strip",
    "outline",
    "sample_panel",
    "scale_note",
    "signed_to_unit",
]

#: the diverging colormap of signed attributions (red: raises the explained score, blue: lowers it)
SIGNED_COLORMAP = "RdBu_r"
#: outline colour of an object mask or a ground-truth box
OUTLINE_COLOUR = (255, 255, 255)


def signed_to_unit(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Signed ``(H, W)`` attributions -> [0, 1] with 0 at 0.5, scaled by the largest magnitude (``max|a| -> 0``/``1``)."""
    array = np.nan_to_num(np.asarray(values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else values,
                                     dtype=np.float32))
    peak = float(np.abs(array).max()) if array.size else 0.0
    return np.clip(0.5 + 0.5 * array / peak, 0.0, 1.0) if peak > 0 else np.full_like(array, 0.5)


def outline(photo: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = OUTLINE_COLOUR) -> np.ndarray:
    """A copy of ``photo`` with the boundary of the bool ``mask`` (resized nearest to the photo) drawn 1 px wide,
    over a dark 1 px halo so it shows on light and dark pictures alike."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape != photo.shape[:2]:
        rows = (np.arange(photo.shape[0]) * mask.shape[0] // photo.shape[0]).clip(0, mask.shape[0] - 1)
        cols = (np.arange(photo.shape[1]) * mask.shape[1] // photo.shape[1]).clip(0, mask.shape[1] - 1)
        mask = mask[rows][:, cols]
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[1:-1, 1:-1]
    edge = inner & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    halo = np.zeros_like(edge)
    halo[1:, :] |= edge[:-1, :]
    halo[:-1, :] |= edge[1:, :]
    halo[:, 1:] |= edge[:, :-1]
    halo[:, :-1] |= edge[:, 1:]
    out = photo.copy()
    out[halo & ~edge] = (0, 0, 0)
    out[edge] = colour
    return out


def heat_overlay(photo: np.ndarray, values: np.ndarray, colormap: str, alpha: float, *, signed: bool = False) -> np.ndarray:
    """The heatmap over a dimmed grey copy of ``photo``, each pixel as opaque as it is relevant.

    ``values`` are in [0, 1] (signed maps through :func:`signed_to_unit`: 0.5 is zero); a pixel's
    opacity is ``min(1, 2 * alpha)`` times its relevance (``|2 v - 1|`` when signed), so the
    picture stays visible where the map is low and the colour is clear where it is high.
    """
    grey = photo.astype(np.float32).mean(axis=2, keepdims=True) * 0.6 + 40.0
    values = _resize_heatmap(np.asarray(values, dtype=np.float32), photo.shape[:2])
    colour = apply_colormap(values, colormap).astype(np.float32)
    strength = np.abs(2.0 * values - 1.0) if signed else values
    opacity = (min(1.0, 2.0 * float(alpha)) * np.clip(strength, 0.0, 1.0))[..., None]
    return np.clip((1.0 - opacity) * grey + opacity * colour + 0.5, 0, 255).astype(np.uint8)


def colour_bar(height: int, colormap: str, ticks: Sequence[str], *, font_size: int = 11, bar_width: int = 10) -> np.ndarray:
    """A vertical colour bar (top: value 1, bottom: 0) with ``ticks`` written top to bottom beside it (RGB uint8)."""
    font = load_font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max((probe.textlength(t, font=font) for t in ticks), default=0)) + 3
    canvas = Image.new("RGB", (bar_width + text_w, height), (255, 255, 255))
    column = apply_colormap(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(bar_width, axis=1), colormap)
    canvas.paste(Image.fromarray(column), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, bar_width - 1, height - 1], outline=(0, 0, 0))
    for k, tick in enumerate(ticks):
        fraction = k / max(1, len(ticks) - 1)
        y = int(round(fraction * (height - font_size - 1)))
        draw.text((bar_width + 3, y), tick, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def scale_note(method: str, signed: bool) -> str:
    """The sentence that states what a panel's heatmap colours mean."""
    if signed:
        return (f"{method}: signed attribution, {SIGNED_COLORMAP} colours: red raises the explained class score, "
                "blue lowers it, white is 0; scale -1..1 = -max..+max |attribution| of each image")
    return f"{method}: heatmap scaled per image, 0 = least to 1 = most relevant pixel of that image"


def sample_panel(
    image: Image.Image | torch.Tensor | np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    colormap: str = "viridis",
    alpha: float = 0.4,
    signed: bool = False,
    mask: torch.Tensor | np.ndarray | None = None,
    boxes: Sequence[Sequence[float]] = (),
    min_size: int = 160,
    font_size: int = 11,
) -> np.ndarray:
    """One sample as ``picture | heatmap alone + colour bar | overlay`` (RGB uint8), headed by the panel names.

    Args:
        image: the model input (normalisation undone with ``mean``/``std``) or a photo.
        heatmap: ``(h, w)`` in [0, 1], or signed attributions when ``signed`` (shown with the
            diverging :data:`SIGNED_COLORMAP`, 0 in white, scaled by the largest magnitude).
        colormap: the colormap of unsigned maps.
        alpha: overlay strength (the most relevant pixel is ``min(1, 2 alpha)`` opaque).
        signed: whether ``heatmap`` holds signed values.
        mask: a bool ``(h, w)`` object mask, outlined on the picture and the overlay.
        boxes: ``xyxy`` boxes in the input's pixels (ground truth), outlined dashed likewise.
        min_size: the shorter side of each part is upscaled (nearest neighbour, whole factor) to at least this.
        font_size: the headers' font size.
    """
    photo = image_to_uint8(image, mean, std)
    base_h = photo.shape[0]
    photo = upscale(photo, int(min_size))
    scale = photo.shape[0] / base_h
    raw = heatmap.detach().float().cpu().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap, np.float32)
    values = signed_to_unit(raw) if signed else _heatmap_array(raw)
    if values.shape != photo.shape[:2]:
        values = _resize_heatmap(values, photo.shape[:2])
    cmap = SIGNED_COLORMAP if signed else colormap
    heat = apply_colormap(values, cmap)
    over = heat_overlay(photo, values, cmap, alpha, signed=signed)
    pictures = [photo, heat, over]
    if mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        pictures = [outline(p, m > 0) for p in pictures]
    if len(boxes):
        scaled = [tuple(float(v) * scale for v in box) for box in boxes]
        pictures = [draw_boxes(p, scaled, dashed=True, colours=[OUTLINE_COLOUR]) for p in pictures]
    ticks = ("+max", "0", "-max") if signed else ("1", "0.5", "0")
    bar = colour_bar(photo.shape[0], cmap, ticks, font_size=font_size)
    gap = 6
    header = font_size + 4
    width = 3 * photo.shape[1] + bar.shape[1] + 3 * gap
    canvas = Image.new("RGB", (width, header + photo.shape[0]), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = load_font(font_size)
    x = 0
    names = ("picture", "attribution (signed)" if signed else "heatmap", "overlay")
    for k, (picture, name) in enumerate(zip(pictures, names, strict=True)):
        canvas.paste(Image.fromarray(picture), (x, header))
        draw.text((x, 0), _fit(draw, name, font, picture.shape[1]), fill=(0, 0, 0), font=font)
        x += picture.shape[1] + (2 if k == 1 else gap)
        if k == 1:
            canvas.paste(Image.fromarray(bar), (x, header))
            x += bar.shape[1] + gap
    return np.asarray(canvas, dtype=np.uint8).copy()


def legend_strip(entries: Sequence[tuple[str, tuple[int, int, int]]], width: int, *, font_size: int = 12,
                 dashed: Sequence[str] = ()) -> np.ndarray:
    """A white strip ``width`` px wide: a colour swatch and its name per entry (wrapping to more rows);
    the names in ``dashed`` get a dashed swatch (ground truth)."""
    font = load_font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_h = font_size + 8
    x, y, placed = 8, 4, []
    for name, colour in entries:
        w = 22 + int(probe.textlength(name, font=font)) + 14
        if x + w > width and x > 8:
            x, y = 8, y + row_h
        placed.append((x, y, name, colour))
        x += w
    canvas = Image.new("RGB", (width, y + row_h + 2), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for x, y, name, colour in placed:
        box = [x, y + 2, x + 16, y + font_size + 2]
        if name in dashed:
            draw.rectangle(box, fill=(90, 90, 90))
            dashed_rectangle(draw, box, colour, 2, dash=3)
        else:
            draw.rectangle(box, fill=colour, outline=(0, 0, 0))
        draw.text((x + 22, y + 1), _fit(draw, name, font, width - x - 24), fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()
