"""The HTML run report (``runner/report/``), opened in a real headless Chromium.

A real ``python run.py callbacks=all`` run (2 short epochs) writes ``report.html`` itself
(``report: true``); the page is loaded from disk by Debian's ``chromium`` driven by Playwright
(``make test`` installs chromium when missing): no console errors, no request but the file itself and
``data:`` URIs, every embedded image decodes, and the interpretation slider changes the shown epoch.
A 2-job sweep with one failed job gets one sweep report with the failed job marked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from runner.checks import check_config
from runner.report import REPORT_FILE, read_metrics_csv, svg_chart, write_report, write_report_safely

from tests.support.paths import REPO

TIMEOUT_S = 600
FAST = ("++trainer.limit_train_batches=5", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2",
        "print_config=false")


def _python(args: list[str], out_dir: Path, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["RUNNER_OUTPUT_DIR"] = str(out_dir)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium on PATH: `make test` installs it (apt-get install -y chromium), or set CHROMIUM=<path>")
    return path


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (never Playwright's own browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Loaded:
    """A page loaded from a file, with every console message, page error and request it made."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page()
        self.console: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def check_offline_and_clean(self) -> None:
        errors = [m for m in self.console if m.startswith(("error", "pageerror", "warning"))]
        assert not errors, errors
        foreign = [u for u in self.requests if u != self.url and not u.startswith("data:")]
        assert not foreign, foreign

    def overflowing(self, selector: str) -> list[str]:
        """What sticks out of ``selector``'s box or is cut: elements past its right edge, boxes that
        clip their content, SVG text outside its chart. Empty when the layout is clean."""
        return self.page.evaluate(_LAYOUT_JS, selector)

    def sizes(self, selector: str) -> list[dict[str, float]]:
        """The shown (CSS px) and natural sizes of the images inside ``selector``."""
        self.page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        return self.page.eval_on_selector_all(
            selector + " img:not([hidden])",
            "els => els.map(i => ({w: i.getBoundingClientRect().width, h: i.getBoundingClientRect().height,"
            " nw: i.naturalWidth, nh: i.naturalHeight}))")

    def images(self) -> list[dict[str, Any]]:
        self.page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        return self.page.evaluate(
            "Array.from(document.images).map(i => ({src: i.getAttribute('src').slice(0, 30),"
            " w: i.naturalWidth, h: i.naturalHeight}))"
        )


_LAYOUT_JS = """(selector) => {
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    const box = root.getBoundingClientRect();
    for (const e of root.querySelectorAll('*')) {
      const b = e.getBoundingClientRect();
      if (!b.width || e.closest('svg') && e.tagName !== 'svg' && e.tagName !== 'text') continue;
      const name = e.tagName.toLowerCase() + (e.getAttribute('class') ? '.' + e.getAttribute('class') : '');
      if (b.right > box.right + 1 || b.left < box.left - 1) out.push(`${name} outside ${selector} by ${Math.round(b.right - box.right)} px`);
      const style = getComputedStyle(e);
      if (e.tagName !== 'svg' && !e.closest('svg') && e.scrollWidth > e.clientWidth + 1 && style.overflowX !== 'visible')
        out.push(`${name} cuts its content (${e.scrollWidth} > ${e.clientWidth} px)`);
      if (e.tagName === 'text') {
        const svg = e.ownerSVGElement.getBoundingClientRect();
        if (b.left < svg.left - 0.5 || b.right > svg.right + 0.5 || b.top < svg.top - 0.5 || b.bottom > svg.bottom + 0.5)
          out.push(`chart text "${e.textContent}" cut by its chart`);
      }
    }
  }
  return out;
}"""


@pytest.fixture
def load(browser: Any) -> Iterator[Any]:
    pages: list[Loaded] = []

    def _load(path: Path) -> Loaded:
        pages.append(Loaded(browser, path))
        return pages[-1]

    yield _load
    for loaded in pages:
        loaded.page.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run with every callback (Gram matrices every 2 steps so that they show in 10 steps)."""
    out = tmp_path_factory.mktemp("report_outputs")
    run = out / "run"
    proc = _python(["run.py", "callbacks=all", "trainer.max_epochs=2", "callbacks.gram_matrix.log_every_n_steps=2",
                    "callbacks.grad_norm.log_every_n_steps=2", *FAST, f"hydra.run.dir={run}"], out)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Report written to" in proc.stdout + proc.stderr
    return run


# ----------------------------------------------------------------------------- one run
@pytest.mark.slow
def test_run_report_opens_offline_with_every_section(run_dir: Path, load: Any) -> None:
    report = run_dir / REPORT_FILE
    assert report.is_file()  # written by the run itself (report: true)
    page = load(report)
    page.check_offline_and_clean()
    images = page.images()
    # 2 interpretation frames (end of epoch 0, end of training) + 5 Gram matrices (steps 2, 4, ..., 10)
    # + the hardest samples of cartography
    assert len(images) == 8, images
    assert all(i["src"].startswith("data:image/png;base64,") and i["w"] > 0 and i["h"] > 0 for i in images), images
    text = page.page.inner_text("body")
    for heading in ("Config and provenance", "Final metrics", "Metric curves", "What the model learned",
                    "Interpretation over training", "Feature statistics per layer", "Gram matrices"):
        assert heading in text
    assert "git commit" in text and "seed" in text and "callbacks=all" in text and "backbone: resnet18" in text
    assert "test/acc" in text and "no interpretation images" not in text and "no Gram" not in text
    charts = page.page.eval_on_selector_all("svg.chart", "els => els.map(e => e.getAttribute('aria-label'))")
    for title in ("loss", "accuracy", "learning rate", "features: mean", "features: sparsity",
                  "Gram: effective rank", "grad_norm"):
        assert title in charts, charts
    # every chart drew a line or points inside the page
    assert page.page.eval_on_selector_all("svg.chart", "els => els.every(e => e.querySelector('polyline,circle'))")
    assert "num_samples" not in " ".join(charts)  # a constant is no chart
    # the layout at a laptop's width: nothing sticks out or is cut; the heatmap tiles at full size
    page.page.set_viewport_size({"width": 1280, "height": 900})
    for section in ("#interpretation", "#learned", "#curves", "#features", "#gram", "#final"):
        assert page.overflowing(section) == [], section
    (grid,) = page.sizes('#interpretation .slider[data-key="interpretation/gradcam"]')
    assert grid["nw"] >= 2 * 3 * 160 and grid["w"] >= grid["nw"] - 1, grid  # 2 samples x 3 parts of >= 160 px, unscaled
    page.page.locator("#interpretation").screenshot(path=str(run_dir.parent / "interpretation.png"))


@pytest.mark.slow
def test_slider_changes_the_shown_epoch(run_dir: Path, load: Any) -> None:
    page = load(run_dir / REPORT_FILE)
    box = page.page.locator('.slider[data-key="interpretation/gradcam"]')

    def shown() -> tuple[str, str]:
        visible = box.locator("img.frame:not([hidden])")
        assert visible.count() == 1
        return box.locator(".label").inner_text(), visible.get_attribute("src")

    label, src = shown()
    assert label == "epoch 1 · step 10", label  # the last frame first
    box.locator("input[type=range]").fill("0")
    label0, src0 = shown()
    assert label0 == "epoch 0 · step 5", label0
    assert src0 != src
    assert box.locator("img.frame").nth(0).is_visible() and not box.locator("img.frame").nth(1).is_visible()
    box.locator("input[type=range]").fill("1")
    assert shown() == (label, src)
    page.check_offline_and_clean()


@pytest.mark.slow
def test_report_generation_is_quick(run_dir: Path) -> None:
    """Issue 8: a report takes <= 2 s (this run has more in it than a default run: images of 2 callbacks)."""
    write_report(run_dir)  # warm: omegaconf imported, files in the page cache
    started = time.perf_counter()
    path = write_report(run_dir)
    seconds = time.perf_counter() - started
    print(f"report of a callbacks=all run: {seconds:.3f} s, {path.stat().st_size / 1e3:.0f} kB")
    assert seconds <= 2.0, seconds


@pytest.mark.slow
def test_explain_writes_its_report(run_dir: Path, tmp_path: Path, load: Any) -> None:
    proc = _python(["explain.py", f"ckpt_path={run_dir}", "methods=[gradcam,saliency]", "num_samples=2",
                    "metrics=true", "metric_kwargs.n_steps=4", "metric_kwargs.n_samples=2",
                    "metric_kwargs.n_bootstrap=20"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (out,) = [p for p in (tmp_path / "explain").iterdir() if p.is_dir()]
    manifest = json.loads((out / "manifest.json").read_text())
    assert REPORT_FILE in manifest["files"]
    page = load(out / REPORT_FILE)
    page.check_offline_and_clean()
    images = page.images()
    assert len(images) == 1 + 2 * 2 and all(i["w"] > 0 for i in images), images  # the grid, 2 images x 2 methods
    text = page.page.inner_text("body")
    assert manifest["checkpoint"]["sha256"] in text and "deletion" in text.lower()


# ----------------------------------------------------------------------------- a sweep
@pytest.mark.slow
def test_sweep_report_marks_the_failed_job(tmp_path: Path, load: Any) -> None:
    """Job 1 names a backbone timm does not have: it fails at setup, the sweep goes on and reports it."""
    proc = _python(["run.py", "-m", "model.backbone=resnet18,no_such_net", "callbacks=none", "trainer.max_epochs=1",
                    "data.batch_size=16", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
                    "++trainer.limit_test_batches=1", "print_config=false"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (sweep,) = list((tmp_path / "multirun" / "train").iterdir())
    assert (sweep / "0" / REPORT_FILE).is_file()  # every job's own report, and one of the sweep
    failed_job = load(sweep / "1" / REPORT_FILE)  # the failed job's report says why
    assert "This run failed." in failed_job.page.inner_text(".banner") and "no_such_net" in failed_job.page.inner_text(".banner")
    failed_job.check_offline_and_clean()
    page = load(sweep / REPORT_FILE)
    page.check_offline_and_clean()
    rows = page.page.locator("#jobs tbody tr")
    assert rows.count() == 2
    assert "failed" not in (rows.nth(0).get_attribute("class") or "")
    assert "failed" in rows.nth(1).get_attribute("class") and "FAILED" in rows.nth(1).inner_text()
    assert "no_such_net" in rows.nth(1).inner_text()
    assert "1 failed" in page.page.inner_text("#jobs")
    # the scatter of model.backbone against val/acc_best: the ok job as a point, the failed one as a cross
    chart = page.page.locator("#hparams svg.chart")
    assert chart.count() == 1 and "model.backbone" in chart.get_attribute("aria-label")
    assert chart.locator("circle title").first.text_content().startswith("job 0")
    assert "job 1" in chart.locator("path title").first.text_content()
    assert rows.nth(0).locator("a").get_attribute("href") == f"0/{REPORT_FILE}"
    assert rows.nth(1).locator("a").get_attribute("href") == f"1/{REPORT_FILE}"


# ----------------------------------------------------------------------------- off and failing
@pytest.mark.slow
def test_report_false_and_a_failing_report_never_fail_the_run(tmp_path: Path) -> None:
    off = tmp_path / "off"
    proc = _python(["run.py", "train=false", "test=false", "report=false", "print_config=false",
                    f"hydra.run.dir={off}"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (off / "metrics.json").is_file() and not (off / REPORT_FILE).exists()

    broken = tmp_path / "broken"
    (broken / REPORT_FILE).mkdir(parents=True)  # the report cannot be written where a folder is
    proc = _python(["run.py", "train=false", "test=false", "print_config=false", f"hydra.run.dir={broken}"], tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Could not write the run report" in proc.stdout + proc.stderr
    assert (broken / "metrics.json").is_file()


def test_report_must_be_true_or_false() -> None:
    with pytest.raises(ValueError, match="report"):
        check_config(OmegaConf.create({"report": "yes"}))


def test_write_report_safely_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / REPORT_FILE).mkdir()
    assert write_report_safely(tmp_path) is None
    assert "Could not write the run report" in caplog.text


@pytest.mark.parametrize("case", ["missing", "not_a_run"])
def test_cli_bad_path_exits_1_in_one_line(tmp_path: Path, case: str) -> None:
    target = tmp_path / "nowhere" if case == "missing" else tmp_path
    proc = subprocess.run([sys.executable, "-m", "runner.report", str(target)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and lines[0].startswith("Error:"), proc.stderr
    assert not (target / REPORT_FILE).exists()


# ----------------------------------------------------------------------------- pieces
def test_metrics_csv_columns_become_step_series(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss,val/acc\n,0,2.5,\n0,4,,0.25\n0,4,2.0,\n1,9,,0.5\n")
    series = read_metrics_csv(path)
    assert series["train/loss"] == [(0.0, 2.5), (4.0, 2.0)]
    assert series["val/acc"] == [(4.0, 0.25), (9.0, 0.5)]
    assert series["epoch"] == [(4.0, 0.0), (4.0, 0.0), (9.0, 1.0)]


def test_svg_chart_drops_non_finite_points_and_escapes_names() -> None:
    svg = svg_chart({"a<b": [(0, 1.0), (1, float("nan")), (2, 3.0)]}, "t&t")
    assert "a&lt;b" in svg and "t&amp;t" in svg and "nan" not in svg.lower()
    assert svg.count('class="dot"') == 2
    assert svg_chart({"x": [(0, float("inf"))]}, "empty") == ""


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value % 256, 0, 0)).save(path)


def test_many_frames_are_thinned_evenly_keeping_first_and_last(tmp_path: Path) -> None:
    for step in range(1, 81):
        _png(tmp_path / "images" / "interpretation" / "gradcam" / f"step_{step:06d}.png", step)
    page = write_report(tmp_path).read_text()
    labels = re.findall(r'class="frame" data-label="([^"]+)"', page)
    assert len(labels) == 60 and labels[0] == "step 1" and labels[-1] == "step 80", labels
    assert "60 of 80 logged images shown" in page


def test_curves_come_from_tensorboard_when_there_is_no_csv(tmp_path: Path) -> None:
    """A logger=tensorboard run: scalars read back from the real event files."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tensorboard" / "version_0"))
    for step in range(5):
        writer.add_scalar("train/loss_step", 2.0 - 0.3 * step, step)
        writer.add_scalar("lr-AdamW", 1e-3, step)
    writer.add_scalar("epoch", 0, 4)
    writer.add_scalar("val/acc", 0.5, 4)
    writer.close()
    page = write_report(tmp_path).read_text()
    assert "From tensorboard/ event files" in page
    assert 'aria-label="loss"' in page and 'aria-label="accuracy"' in page and 'aria-label="learning rate"' in page
    assert "train/loss_step (last 0.8000)" in page


def test_the_run_records_its_provenance_each_time_a_later_report_reads_it(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    write_report(tmp_path, provenance={"command": "python run.py trainer.max_epochs=2"})
    write_report(tmp_path, provenance={"command": "python run.py ckpt_path=last trainer.max_epochs=4"})  # a resume
    write_report(tmp_path)  # rewritten later, e.g. python -m runner.report
    saved = json.loads((tmp_path / "provenance.json").read_text())
    assert saved["command"] == "python run.py ckpt_path=last trainer.max_epochs=4"
    assert saved["versions"]["python"] and "git_commit" in saved
    assert "ckpt_path=last trainer.max_epochs=4" in (tmp_path / REPORT_FILE).read_text()


# ----------------------------------------------------------------------------- layout of the new sections
def test_explain_metrics_table_layout(tmp_path: Path, load: Any) -> None:
    """The wide metrics table (methods x metrics, baselines apart) fits a 1280 px window, nothing cut."""
    from tests.support.report_dirs import explain_metrics_dir

    page = load(write_report(explain_metrics_dir(tmp_path)))
    page.page.set_viewport_size({"width": 1280, "height": 800})
    assert page.overflowing("#metrics") == []
    assert page.page.locator("#metrics td.best").count() == 2
    assert "about 95 images needed" in page.page.inner_text("#metrics ul.recommendations")
    page.check_offline_and_clean()


def test_detection_maps_grid_layout(tmp_path: Path, load: Any) -> None:
    """A row per method, a column per detection, each map shown at its 160 px, all inside the section."""
    from tests.support.report_dirs import detection_explain_dir

    page = load(write_report(detection_explain_dir(tmp_path)))
    page.page.set_viewport_size({"width": 1280, "height": 800})
    assert page.overflowing("#overlays") == []
    grid = page.page.locator("#overlays table.detgrid")
    assert grid.locator("tbody tr").count() == 2 and grid.locator("thead th").count() == 1 + 5
    sizes = page.sizes("#overlays table.detgrid")
    assert len(sizes) == 2 * 5 and all(s["w"] >= 159 for s in sizes), sizes
    page.check_offline_and_clean()


def test_learned_section_layout(tmp_path: Path, load: Any) -> None:
    """The alarm banner, the explanation charts, the data map and the hardest table fit a 1280 px window, nothing cut."""
    from tests.support.report_dirs import learned_run_dir

    page = load(write_report(learned_run_dir(tmp_path, alarm=True)))
    page.page.set_viewport_size({"width": 1280, "height": 900})
    assert page.overflowing("#learned") == []
    assert page.page.locator("#learned .banner.alarm").is_visible()
    assert page.page.locator("#learned svg.chart").count() == 1 + 3 + 1  # accuracy, 3 metrics, the data map
    page.check_offline_and_clean()
