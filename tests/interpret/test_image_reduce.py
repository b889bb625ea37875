"""Huge pictures are reduced on load: bounded memory, no raw PIL warning (issue 21, item 9)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from interpret.images import load_image

ROOT = Path(__file__).resolve().parents[2]

#: how much the peak memory (VmHWM, reset before the load) of a process may grow while it loads the 10000 x 10000 JPEG
#: reduced to 1024 px; read at full size the same file costs ~250 MB more (100 M grey pixels)
PEAK_GROWTH_MB = 64

_MEASURE = """
import sys
sys.path.insert(0, sys.argv[3])
from interpret.images import load_image

def kb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from the current size
before = kb("VmRSS:")
picture = load_image(sys.argv[1], max_side=int(sys.argv[2]) if sys.argv[2] != "none" else None)
print(picture.width, picture.height, (kb("VmHWM:") - before) / 1024)
"""


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10000 x 10000 grey JPEG (100 M pixels: over PIL's decompression-bomb warning limit)."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.linear_gradient("L").resize((10000, 10000)).save(path, quality=70)
    return path


def _peak_growth(path: Path, max_side: str) -> tuple[int, int, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), max_side, str(ROOT)], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    return int(out[0]), int(out[1]), float(out[2])


def test_a_huge_picture_is_reduced_on_load_with_bounded_memory(huge_jpeg: Path) -> None:
    width, height, grown = _peak_growth(huge_jpeg, "1024")
    assert (width, height) == (1024, 1024)
    assert grown < PEAK_GROWTH_MB, f"loading reduced grew the peak memory by {grown:.0f} MB"
    _, _, full = _peak_growth(huge_jpeg, "none")
    assert full > 100 + grown, (full, grown)  # the measure does see a full-size read (100 MB of pixels)


def test_no_raw_pil_warning_and_the_original_size_is_kept(huge_jpeg: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        picture = load_image(huge_jpeg, max_side=500)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert picture.size == (500, 500) and picture.info["original_size"] == (10000, 10000)


def test_small_pictures_are_untouched_and_max_side_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), (1, 2, 3)).save(path)
    assert load_image(path, max_side=300).size == (300, 100)
    assert load_image(path, max_side=150).size == (150, 50)  # aspect kept
    assert "original_size" not in load_image(path).info
    with pytest.raises(ValueError, match="max_side must be an int >= 1"):
        load_image(path, max_side=0)
