"""Colormaps, overlays (normalisation undone first), boxes (solid or dashed, labels on solid patches, a
colour per class), captioned grids whose captions wrap (RGB uint8 arrays) and the matplotlib figure of
a detection explanation. The sample tiles built from them are in :mod:`interpret.tiles`."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from interpret.checks import positive_int
from interpret.layers import resolve_normalization

if TYPE_CHECKING:
    from interpret.tasks.detection import DetectionExplanation

__all__ = [
    "apply_colormap",
    "check_colormap",
    "class_colour",
    "dashed_rectangle",
    "draw_boxes",
    "image_to_uint8",
    "load_font",
    "make_grid",
    "overlay_heatmap",
    "save_detection_figure",
    "upscale",
]


def _heatmap_array(heatmap: Any) -> np.ndarray:
    if isinstance(heatmap, torch.Tensor):
        heatmap = heatmap.detach().float().cpu().numpy()
    array = np.asarray(heatmap, dtype=np.float32)
    if array.ndim not in (2, 3):
        raise ValueError(f"heatmap must be (H, W) or (B, H, W), got shape {array.shape}")
    return np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)


def check_colormap(colormap: Any, what: str = "colormap") -> None:
    """Raise a ValueError naming ``what`` and the closest names unless ``colormap`` is a matplotlib colormap."""
    import matplotlib

    names = list(matplotlib.colormaps)
    if not isinstance(colormap, str) or colormap not in names:
        close = difflib.get_close_matches(str(colormap), names, n=3) if isinstance(colormap, str) else []
        hint = f" Closest: {', '.join(close)}." if close else " E.g. viridis, jet, inferno, magma, turbo."
        raise ValueError(
            f"unknown {what} {colormap!r}, must be a matplotlib colormap name.{hint} "
            "See matplotlib.colormaps for every name."
        )


def apply_colormap(heatmap: torch.Tensor | np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """Colour a heatmap in [0, 1] with a matplotlib colormap.

    Args:
        heatmap: ``(H, W)`` or ``(B, H, W)`` values in [0, 1] (clipped).
        colormap: any matplotlib colormap name.

    Returns:
        RGB uint8 ``(H, W, 3)`` or ``(B, H, W, 3)``.

    Raises:
        ValueError: an unknown colormap (with the closest names) or a wrong shape.
    """
    import matplotlib

    check_colormap(colormap)
    values = _heatmap_array(heatmap)
    rgba = matplotlib.colormaps[colormap](values)
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def image_to_uint8(
    image: Image.Image | torch.Tensor | np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Turn an image into RGB uint8 ``(H, W, 3)``, undoing the input normalisation first.

    Args:
        image: a PIL image; a uint8 ``(H, W, 3)``/``(H, W)`` array; or a float ``(C, H, W)`` /
            ``(1, C, H, W)`` tensor or array (model input: ``x * std + mean`` is applied when
            given, then values are clipped to [0, 1]).
        mean: per-channel mean of the normalisation.
        std: per-channel std of the normalisation.

    Raises:
        ValueError: an unsupported shape; TypeError: an unsupported type.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(image, torch.Tensor):
        array = image.detach().float().cpu().numpy()
        channels_first = True
    elif isinstance(image, np.ndarray):
        array = image
        channels_first = array.ndim in (3, 4) and array.shape[-1] not in (1, 3) and array.shape[-3] in (1, 3)
        if array.dtype == np.uint8:
            if array.ndim == 2:
                return np.repeat(array[:, :, None], 3, axis=2)
            if array.ndim == 3 and array.shape[2] in (1, 3):
                return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array.copy()
            raise ValueError(f"a uint8 image array must be (H, W) or (H, W, 3), got shape {array.shape}")
        array = array.astype(np.float32)
    else:
        raise TypeError(f"image must be a PIL image, a tensor or a numpy array, got {type(image).__name__}")
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of shape {array.shape}")
        array = array[0]
    if array.ndim == 2:
        array = array[None]
        channels_first = True
    if array.ndim != 3:
        raise ValueError(f"image must be (C, H, W) or (H, W, C), got shape {array.shape}")
    if channels_first:
        array = np.transpose(array, (1, 2, 0))
    channels = array.shape[2]
    if mean is not None and std is not None:
        m = np.asarray(mean, dtype=np.float32)
        s = np.asarray(std, dtype=np.float32)
        if m.size in (1, channels):
            array = array * s.reshape(1, 1, -1) + m.reshape(1, 1, -1)
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels != 3:
        raise ValueError(f"image must have 1 or 3 channels to display, got {channels}")
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if heatmap.shape == size:
        return heatmap
    tensor = torch.from_numpy(np.ascontiguousarray(heatmap))[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()


def overlay_heatmap(
    image: Image.Image | torch.Tensor | np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    alpha: float = 0.4,
    colormap: str = "viridis",
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    model: nn.Module | None = None,
) -> np.ndarray:
    """Blend a coloured heatmap over an image: ``(1 - alpha) * image + alpha * colour``.

    A normalised tensor is first turned back into a photo with ``mean``/``std`` (given, or read
    from ``model``'s timm data config; without either, float values are taken as [0, 1]).

    Args:
        image: PIL image, uint8 ``(H, W, 3)`` array, or float ``(C, H, W)`` model input.
        heatmap: ``(H, W)`` in [0, 1]; resized bilinearly to the image if sizes differ.
        alpha: heatmap opacity in [0, 1].
        colormap: matplotlib colormap name.
        mean: normalisation mean to undo.
        std: normalisation std to undo.
        model: a model whose data config gives ``mean``/``std`` when they are not given.

    Returns:
        RGB uint8 ``(H, W, 3)``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is None and model is not None:
        normalization = resolve_normalization(model)
        if normalization is not None:
            mean, std = normalization
    photo = image_to_uint8(image, mean, std)
    values = _heatmap_array(heatmap)
    if values.ndim != 2:
        raise ValueError(f"overlay_heatmap takes one (H, W) heatmap, got shape {values.shape}")
    values = _resize_heatmap(values, photo.shape[:2])
    colour = apply_colormap(values, colormap).astype(np.float32)
    blended = (1.0 - alpha) * photo.astype(np.float32) + alpha * colour
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def load_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font at ``size`` pixels (a bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` pixels (a single too long word is cut with "...")."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return [_fit(draw, line, font, width) for line in lines]


def make_grid(
    images: Sequence[np.ndarray | Image.Image],
    captions: Sequence[str | Sequence[str]] | None = None,
    ncols: int | None = None,
    padding: int = 2,
    font_size: int | None = None,
    background: int = 255,
    *,
    title: str = "",
    colors: Sequence[tuple[int, int, int]] | None = None,
    min_tile: int = 0,
) -> np.ndarray:
    """Tile RGB images into one image, each with an optional caption underneath.

    Args:
        images: RGB uint8 ``(H, W, 3)`` arrays or PIL images (sizes may differ; each tile is as
            large as the largest image).
        captions: one caption per image (a string, or a list of lines), or None. Too long lines
            wrap at spaces (a single word wider than a tile is shortened with "...").
        ncols: images per row (default: ``ceil(sqrt(n))``).
        padding: pixels between tiles.
        font_size: caption font size (default: scaled to the tile width, 8 to 14).
        background: grey level of the background and caption strip.
        title: text above the grid ("" for none; wraps, "\\n" starts a new line).
        colors: one RGB colour per caption (default black).
        min_tile: small images are upscaled (nearest neighbour, an integer factor) until their
            shorter side is at least this many pixels, so captions stay readable.

    Returns:
        RGB uint8 ``(H', W', 3)``.
    """
    if len(images) == 0:
        raise ValueError("make_grid needs at least one image")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"got {len(captions)} captions for {len(images)} images")
    if colors is not None and len(colors) != len(images):
        raise ValueError(f"got {len(colors)} colors for {len(images)} images")
    positive_int(ncols, "ncols", allow_none=True)
    arrays = [image_to_uint8(image) for image in images]
    if min_tile > 0:
        scaled = []
        for array in arrays:
            factor = max(1, -(-int(min_tile) // max(1, min(array.shape[:2]))))
            scaled.append(array.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else array)
        arrays = scaled
    count = len(arrays)
    ncols = min(ncols or int(np.ceil(np.sqrt(count))), count)
    nrows = int(np.ceil(count / ncols))
    tile_h = max(a.shape[0] for a in arrays)
    tile_w = max(a.shape[1] for a in arrays)
    size = font_size or int(np.clip(tile_w // 10, 8, 14))
    line_h = size + 3
    font = load_font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = None
    if captions is not None:  # long lines wrap at spaces: a caption is never cut mid-sentence
        lines = [
            [part for line in ([c] if isinstance(c, str) else [str(x) for x in c]) for part in _wrap(probe, line, font, tile_w)]
            for c in captions
        ]
    n_lines = max((len(entry) for entry in lines), default=0) if lines is not None else 0
    caption_h = n_lines * line_h + (2 if n_lines else 0)
    width = ncols * tile_w + (ncols + 1) * padding
    title_lines = [part for line in title.split("\n") for part in _wrap(probe, line, font, width - 2 * padding)] if title else []
    title_h = len(title_lines) * line_h + padding if title else 0
    height = title_h + nrows * (tile_h + caption_h) + (nrows + 1) * padding
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    for j, line in enumerate(title_lines):
        draw.text((padding, padding + j * line_h), line, fill=(0, 0, 0), font=font)
    for i, array in enumerate(arrays):
        row, col = divmod(i, ncols)
        x = padding + col * (tile_w + padding)
        y = title_h + padding + row * (tile_h + caption_h + padding)
        canvas.paste(Image.fromarray(array), (x, y))
        if lines is not None:
            colour = tuple(colors[i]) if colors is not None else (0, 0, 0)
            for j, line in enumerate(lines[i]):
                draw.text((x, y + tile_h + 2 + j * line_h), _fit(draw, line, font, tile_w), fill=colour, font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def upscale(photo: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an ``(H, W, 3)`` image by a whole factor to at least ``min_size`` pixels."""
    factor = max(1, -(-min_size // max(1, min(photo.shape[:2]))))
    return photo.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else photo


_BOX_COLOURS = ((230, 25, 75), (0, 130, 200), (245, 130, 48), (60, 180, 75), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (128, 128, 0))


def class_colour(index: int) -> tuple[int, int, int]:
    """The colour of class (or box) ``index`` in every detection picture and its legend."""
    return _BOX_COLOURS[int(index) % len(_BOX_COLOURS)]


def dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: tuple[int, int, int], width: int,
                      dash: int = 6) -> None:
    x0, y0, x1, y1 = box
    for a, b, fixed, horizontal in ((x0, x1, y0, True), (x0, x1, y1, True), (y0, y1, x0, False), (y0, y1, x1, False)):
        start = a
        while start < b:
            end = min(b, start + dash)
            line = [(start, fixed), (end, fixed)] if horizontal else [(fixed, start), (fixed, end)]
            draw.line(line, fill=colour, width=width)
            start += 2 * dash


def _text_colour(colour: Sequence[int]) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 150 else (255, 255, 255)


def draw_boxes(
    photo: np.ndarray,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str] = (),
    *,
    colours: Sequence[tuple[int, int, int]] | None = None,
    dashed: bool = False,
    font_size: int = 11,
    width: int = 2,
) -> np.ndarray:
    """Draw ``xyxy`` boxes (pixels of ``photo``) with their labels on a copy of an ``(H, W, 3)`` uint8 image.

    Each label is written on a solid patch of its box's colour, above the box when there is room,
    else inside it, moved down until it overlaps no label drawn before.

    Args:
        photo: the picture.
        boxes: ``xyxy`` boxes.
        labels: one text per box ("" for none).
        colours: one colour per box (cycled; default: :func:`class_colour` of the box's position).
        dashed: dashed outlines (ground truth) instead of solid ones (detections).
        font_size: label font size.
        width: line width.
    """
    canvas = Image.fromarray(np.ascontiguousarray(photo))
    draw = ImageDraw.Draw(canvas)
    font = load_font(font_size)
    taken: list[tuple[float, float, float, float]] = []
    height_px, width_px = photo.shape[:2]
    for k, box in enumerate(boxes):
        colour = tuple(colours[k % len(colours)]) if colours else class_colour(k)
        x0, y0, x1, y1 = (float(v) for v in box)
        rect = [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)]
        if dashed:
            dashed_rectangle(draw, rect, colour, width)
        else:
            draw.rectangle(rect, outline=colour, width=width)
        if k < len(labels) and labels[k]:
            text = _fit(draw, labels[k], font, width_px - 2)
            w = draw.textlength(text, font=font) + 4
            h = font_size + 3
            x = min(max(0.0, x0), max(0.0, width_px - w))
            y = y0 - h if y0 - h >= 0 else y0
            for _ in range(20):
                if not any(x < t[2] and t[0] < x + w and y < t[3] and t[1] < y + h for t in taken):
                    break
                y = min(y + h, height_px - h)
            taken.append((x, y, x + w, y + h))
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
            draw.text((x + 2, y + 1), text, fill=_text_colour(colour), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


# ------------------------------------------------------------------------ detection figure
_FIGURE_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324")


def save_detection_figure(
    result: DetectionExplanation,
    save_path: str | Path,
    *,
    colormap: str = "viridis",
    alpha: float = 0.45,
) -> Path:
    """One PNG: the combined view (every box on the combined map), then one panel per detection
    (its heatmap over the image, its box drawn, captioned with label and score).

    Returns:
        the path written (folders are created).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from interpret.render import overlay_heatmap

    path = Path(save_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = len(result)
    panels = [("all detections" if count else "no detection above the threshold", result.combined, list(range(count)))]
    for index in range(count):
        caption = f"{index}: {result.label_name(index)} {float(result.scores[index]):.2f}"
        panels.append((caption, result.maps[index], [index]))
    ncols = min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    height, width = result.image.shape[:2]
    side = 3.0
    aspect = height / max(width, 1)
    figure = Figure(figsize=(side * ncols, side * aspect * nrows + 0.4 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for axis in axes[len(panels) :]:
        axis.set_axis_off()
    for axis, (title, heatmap, boxes) in zip(axes, panels, strict=False):
        axis.imshow(overlay_heatmap(result.image, heatmap, alpha=alpha if count else 0.0, colormap=colormap))
        for index in boxes:
            x1, y1, x2, y2 = (float(v) for v in result.boxes[index])
            colour = _FIGURE_COLOURS[index % len(_FIGURE_COLOURS)]
            axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
            axis.text(
                x1, y1, f"{result.label_name(index)} {float(result.scores[index]):.2f}", color="white", fontsize=7,
                va="bottom", bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            )
        axis.set_title(title, fontsize=9)
        axis.set_axis_off()
    figure.suptitle(f"{result.method}: {count} detection{'s' if count != 1 else ''}", fontsize=10)
    figure.savefig(path, dpi=100)
    return path
