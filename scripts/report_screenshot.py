"""Screenshot one section of a report (``report.html``) in headless Chromium, as a small PNG.

    python scripts/report_screenshot.py outputs/train/runs/<run>/report.html "#interpretation" docs/run_report_interpretation.png

Debian's ``chromium`` (``CHROMIUM=<path>`` to choose another) is driven by Playwright at a 1280 px wide
window; the sticky navigation bar is unstuck first so it does not cover the section. The PNG is
reduced to 256 colours (and scaled down if it is still too large) to stay under ``--max-kb``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def screenshot(report: Path, selector: str, out: Path, *, width: int = 1280, max_kb: int = 300) -> Path:
    """Write ``selector``'s element of ``report`` to ``out`` as a PNG of at most ``max_kb`` kB."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("no chromium on PATH (apt-get install -y chromium), or set CHROMIUM=<path>")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".raw.png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(report.resolve().as_uri())
            page.wait_for_load_state("load")
            page.add_style_tag(content="nav{position:static!important}")
            page.locator(selector).first.screenshot(path=str(raw))
        finally:
            browser.close()
    image = Image.open(raw).convert("RGB")
    raw.unlink()
    scale = 1.0
    while True:
        shown = image if scale == 1.0 else image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS)
        shown.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        if out.stat().st_size <= max_kb * 1000 or scale < 0.3:
            return out
        scale *= 0.85


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report.html")
    parser.add_argument("selector", help='the section, e.g. "#interpretation", "#metrics", "#overlays"')
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    parser.add_argument("--max-kb", type=int, default=300, help="largest file size")
    args = parser.parse_args(argv)
    path = screenshot(args.report, args.selector, args.out, width=args.width, max_kb=args.max_kb)
    print(f"{path}: {path.stat().st_size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
