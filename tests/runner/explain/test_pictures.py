"""``explain.py images=[...]``: big pictures are reduced on load, and the log says so (issue 21, item 9)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from runner.explain.pipeline import PICTURE_MAX_SIDE, _pictures


def test_pictures_are_reduced_to_the_bound_and_the_log_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    big, small = tmp_path / "big.jpg", tmp_path / "small.png"
    Image.new("RGB", (3 * PICTURE_MAX_SIDE, PICTURE_MAX_SIDE), (200, 30, 30)).save(big)
    Image.new("RGB", (40, 30), (0, 90, 0)).save(small)
    with caplog.at_level(logging.INFO, logger="runner.explain.pipeline"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pictures = _pictures(SimpleNamespace(images=[str(big), str(small)]))  # type: ignore[arg-type]
    assert [p.size for p in pictures] == [(PICTURE_MAX_SIDE, PICTURE_MAX_SIDE // 3), (40, 30)]
    assert f"big.jpg is {3 * PICTURE_MAX_SIDE}x{PICTURE_MAX_SIDE}: reduced to {PICTURE_MAX_SIDE}x{PICTURE_MAX_SIDE // 3}" in caplog.text
    assert "small.png" not in caplog.text
