"""The picture of a Gram (cosine-similarity) matrix: a heatmap on the fixed scale -1 to 1 with a colour
bar, and, for rows sorted by class, class bands (a coloured strip per class along the top and left
edges, the class names beside them, thin lines between the class blocks).

Drawn with numpy and PIL (much faster than a matplotlib figure), with matplotlib's colour table;
:class:`callbacks.GramMatrixCallback` logs it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from interpret.class_structure import class_blocks
from interpret.render import class_colour, load_font

__all__ = ["class_name", "render_gram"]

#: the width of a class band (pixels), the gap between bands and matrix, the longest class name drawn
BAND, BAND_GAP, NAME_MAX_PX = 6, 2, 110
_OUTER = BAND + BAND_GAP  # how far a band's outer edge lies from the matrix
_BLACK, _WHITE = (0, 0, 0), (255, 255, 255)


def render_gram(
    gram: Tensor,
    title: str = "",
    colormap: str = "viridis",
    label: str = "cosine similarity",
    labels: Tensor | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> np.ndarray:
    """Draw the matrix as a heatmap on the fixed scale [-1, 1], with a colour bar and sample
    indices on both axes; returns an ``(H, W, 3)`` uint8 array.

    Args:
        gram: ``(N, N)`` matrix (values outside [-1, 1] are clipped, NaN drawn as 0).
        title: drawn above the matrix; ``"\\n"`` separates lines.
        colormap: a matplotlib colormap name.
        label: the colour bar's caption.
        labels: ``(N,)`` integer class of each row (rows sorted by class, e.g. with
            :func:`interpret.class_structure.label_order`): draws a band of
            :func:`interpret.render.class_colour` per class block along the top and left edges,
            the class names beside the bands where they fit (the left side's names replace the
            sample indices there) and thin white lines between blocks. None: no bands.
        class_names: the name of class ``k`` (a sequence indexed by label or a mapping); a label
            it does not cover is written as its number.
    """
    g = gram.detach().float().cpu().clamp(-1.0, 1.0).numpy()
    n = g.shape[0]
    cell = max(1, 384 // max(n, 1))
    side = n * cell
    lut = _colour_table(colormap)
    rgb = lut[np.round((np.nan_to_num(g, nan=0.0) + 1.0) * 127.5).astype(np.int64)]
    rgb = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)

    font = load_font(11)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    blocks = class_blocks(labels) if labels is not None else []
    names = {k: _shorten(measure, class_name(k, class_names), font) for k, _, _ in blocks}
    band = _OUTER if blocks else 0
    lines = title.split("\n") if title else []
    widest = max((int(measure.textlength(t, font=font)) for t in names.values()), default=0)
    left = max(58, 24 + widest + 4 + band) if blocks else 58
    top = (12 + 14 * len(lines) if lines else 10) + (14 + band if blocks else 0)
    bottom, bar_w, gap, right = 44, 16, 14, 76
    width, height = left + side + gap + bar_w + right, top + side + bottom
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(Image.fromarray(np.ascontiguousarray(rgb)), (left, top))
    draw = ImageDraw.Draw(canvas)
    black = _BLACK
    for _, start, _ in blocks[1:]:  # thin lines between class blocks
        draw.line([left + start * cell, top, left + start * cell, top + side - 1], fill=_WHITE)
        draw.line([left, top + start * cell, left + side - 1, top + start * cell], fill=_WHITE)
    draw.rectangle([left - 1, top - 1, left + side, top + side], outline=black)
    for i in _ticks(n):
        pos = int((i + 0.5) * cell)
        draw.line([left + pos, top + side, left + pos, top + side + 4], fill=black)  # x axis
        draw.text((left + pos, top + side + 6), str(i), fill=black, font=font, anchor="mt")
        if not blocks:
            draw.line([left - 5, top + pos, left - 1, top + pos], fill=black)  # y axis
            draw.text((left - 7, top + pos), str(i), fill=black, font=font, anchor="rm")
    _draw_bands(draw, blocks, names, font, left, top, cell)
    axis = "sample index, sorted by class" if blocks else "sample index"
    draw.text((left + side // 2, height - 4), axis, fill=black, font=font, anchor="md")
    _vertical_text(canvas, "sample, sorted by class" if blocks else axis, (4, top + side // 2), font)
    # colour bar: top is +1, bottom is -1
    bar_x = left + side + gap
    column = lut[np.linspace(255, 0, side).round().astype(np.int64)]
    canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(column[:, None], bar_w, axis=1))), (bar_x, top))
    draw.rectangle([bar_x - 1, top - 1, bar_x + bar_w, top + side], outline=black)
    for value in (1.0, 0.5, 0.0, -0.5, -1.0):
        y = top + int(round((1.0 - value) / 2.0 * (side - 1)))
        draw.line([bar_x + bar_w, y, bar_x + bar_w + 4, y], fill=black)
        draw.text((bar_x + bar_w + 6, y), f"{value:g}", fill=black, font=font, anchor="lm")
    _vertical_text(canvas, label, (bar_x + bar_w + 40, top + side // 2), font)
    for j, line in enumerate(lines):
        draw.text((left, 6 + 14 * j), line, fill=black, font=font)
    return np.asarray(canvas)


def class_name(label: int, class_names: Sequence[str] | Mapping[int, str] | None) -> str:
    """The name of class ``label`` in ``class_names`` (a sequence or a mapping), else its number."""
    if isinstance(class_names, Mapping):
        return str(class_names.get(label, label))
    if class_names is not None and not isinstance(class_names, str) and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _draw_bands(
    draw: ImageDraw.ImageDraw, blocks: list[tuple[int, int, int]], names: dict[int, str], font: Any,
    left: int, top: int, cell: int,
) -> None:
    """A strip of the class colour per block above and left of the matrix, the names beside them."""
    for k, start, stop in blocks:
        colour = class_colour(k)
        a, b = start * cell, stop * cell - 1
        draw.rectangle([left + a, top - 1 - _OUTER, left + b, top - 2 - BAND_GAP], fill=colour)  # top
        draw.rectangle([left - 1 - _OUTER, top + a, left - 2 - BAND_GAP, top + b], fill=colour)  # left
        text = names[k]
        if draw.textlength(text, font=font) + 2 <= b - a + 1:  # above the top band, where it fits
            draw.text((left + (a + b) // 2, top - 3 - _OUTER), text, fill=_BLACK, font=font, anchor="md")
        if b - a + 1 >= 11:  # left of the left band, where a line of text fits
            draw.text((left - 4 - _OUTER, top + (a + b + 1) // 2), text, fill=_BLACK, font=font, anchor="rm")


def _shorten(draw: ImageDraw.ImageDraw, text: str, font: Any) -> str:
    """``text`` cut (with "...") to at most :data:`NAME_MAX_PX` pixels."""
    if draw.textlength(text, font=font) <= NAME_MAX_PX:
        return text
    while text and draw.textlength(text + "...", font=font) > NAME_MAX_PX:
        text = text[:-1]
    return text + "..."


@functools.lru_cache(maxsize=8)
def _colour_table(colormap: str) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def _ticks(n: int) -> list[int]:
    """Sample indices to label: multiples of a round step, about 5 of them, plus the last."""
    if n <= 1:
        return [0]
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000) if n / s <= 6) if n <= 6000 else n // 5
    ticks = list(range(0, n, step))
    if n - 1 - ticks[-1] >= step / 2:
        ticks.append(n - 1)
    return ticks


def _vertical_text(canvas: Image.Image, text: str, center: tuple[int, int], font: Any) -> None:
    """Paste ``text`` rotated by 90 degrees, centred at ``center`` (x of its left edge, y centre)."""
    box = font.getbbox(text)
    label = Image.new("RGB", (box[2] + 2, box[3] + 2), "white")
    ImageDraw.Draw(label).text((1, 1), text, fill=(0, 0, 0), font=font)
    label = label.rotate(90, expand=True)
    canvas.paste(label, (center[0], center[1] - label.height // 2))
