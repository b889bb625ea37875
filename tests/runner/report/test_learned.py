"""The run report's "What the model learned" section and the sweep's explanation columns, on directories
written here: explanation curves, the shortcut alarm, the cartography map, the hardest samples."""

from __future__ import annotations

import re
from pathlib import Path

from runner.report import build_run_report, build_sweep_report
from runner.report.learned import first_alarms, hardest_samples, precision_at_k
from runner.report.readers import read_cartography, read_metrics_csv
from tests.support.report_dirs import learned_run_dir as _run

def test_alarm_banner_names_the_first_epoch_and_its_evidence(tmp_path: Path) -> None:
    run = _run(tmp_path, alarm=True)
    series = read_metrics_csv(run / "csv" / "metrics.csv")
    (alarm,) = first_alarms(series)
    assert alarm == {"method": "gradcam", "step": 15, "epoch": 2, "accuracy": 0.9,
                     "evidence": {"energy_in_mask": 0.03, "location_agreement": 0.5}}
    html = build_run_report(run)
    section = html[html.index('<section id="learned">'):html.index('<section id="interpretation">')]
    banner = re.sub(r"\s+", " ", section[section.index('class="banner alarm"'):section.index("</div>")])
    assert "first fired at epoch 2, step 15" in banner, banner
    assert "energy_in_mask = 0.0300, location_agreement = 0.5000" in banner and "accuracy 0.9000" in banner
    charts = re.findall(r'aria-label="([^"]+)"', section)
    assert charts[:4] == ["accuracy", "energy_in_mask", "location_agreement", "drift"], charts
    assert section.count("shortcut alarm fired") == 2  # marked on the two evidence charts
    # the explanation scalars are not charted again under "Other scalars"; the image is not a slider
    assert 'id="other"' not in html and 'data-key="cartography/hardest"' not in html


def test_clean_run_says_the_alarm_stayed_silent(tmp_path: Path) -> None:
    html = build_run_report(_run(tmp_path, alarm=False, cartography=False, image=False))
    section = html[html.index('<section id="learned">'):html.index('<section id="interpretation">')]
    assert "banner alarm" not in section and "The shortcut alarm stayed silent." in section
    assert "no cartography.csv" in section


def test_cartography_map_precision_and_hardest_table(tmp_path: Path) -> None:
    run = _run(tmp_path, alarm=False)
    rows = read_cartography(run)
    assert len(rows) == 40 and rows[3]["noisy"] == 1.0
    assert precision_at_k(rows) == (0.75, 4)  # 3, 30, 7 and 11 are the 4 lowest; 20 is flipped but 5th
    assert [int(r["index"]) for r in hardest_samples(rows, 5)] == [3, 30, 7, 11, 20]
    html = build_run_report(run)
    section = html[html.index('<section id="learned">'):html.index('<section id="interpretation">')]
    assert "<b>75%</b> of the 4 least confident" in section
    table = section[section.index("hardest to learn"):]
    first = re.findall(r"<tr><td class=\"num\">1</td><td class=\"num\">(\d+)</td>", table)
    assert first == ["3"], first
    scatter = section[section.index('aria-label="data map'):section.index("</svg>", section.index('aria-label="data map'))]
    assert scatter.count('stroke="#111111"') == 4 + 1  # 4 flipped samples ringed (+ the legend's ring)
    assert "label flipped on purpose" in scatter and "correct &lt; 20% of epochs" in scatter
    assert "data:image/png;base64," in section[section.index("The hardest samples, with"):]


def test_without_any_measurement_the_section_says_what_to_enable(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,train/loss\n0,4,1.0\n")
    html = build_run_report(tmp_path)
    section = html[html.index('<section id="learned">'):html.index('<section id="interpretation">')]
    assert "no explanation metrics" in section and "no cartography.csv" in section


def test_sweep_compares_the_final_explanation_metrics(tmp_path: Path) -> None:
    import json

    sweep = tmp_path / "sweep"
    for num, kind in enumerate(("shortcut", "clean")):
        job = sweep / str(num)
        _run(job, alarm=kind == "shortcut", cartography=False, image=False, name=".")
        (job / "job_result.json").write_text(json.dumps({
            "status": "ok", "job_num": num, "overrides": [f"data.shortcut={'patch' if num == 0 else 'null'}"],
            "optimized_metric": 0.9, "metrics": {"val/acc": 0.9}}))
    html = build_sweep_report(sweep)
    section = html[html.index('<section id="explanations">'):]
    section = section[:section.index("</section>")]
    assert "energy_in_mask" in section and "location_agreement" in section
    cells = re.findall(r'<td class="num">([0-9.]+)</td>', section)
    assert "0.0200" in cells and "0.6200" in cells, cells  # the last energy of each job
    assert "alarm at epoch 2" in section


def test_the_names_are_the_callbacks_own() -> None:
    """The report and runner.artifacts take the callbacks' names from callbacks.names without importing torch,
    and the callbacks write under the very same names."""
    import subprocess
    import sys

    code = ("import sys; import runner.report, runner.artifacts as a; from runner.report import learned; "
            "print(a.CARTOGRAPHY_FILE, learned.HARDEST_KEY, 'torch' in sys.modules, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from callbacks import cartography, feature_monitor, gram_matrix, names

    assert out == [cartography.CARTOGRAPHY_FILE, cartography.HARDEST_KEY, "False", "False"]
    assert (feature_monitor.FEATURES_PREFIX, gram_matrix.GRAM_PREFIX) == (names.FEATURES_PREFIX, names.GRAM_PREFIX)


def test_a_large_data_map_is_thinned_keeping_the_hardest() -> None:
    from runner.report.learned import MAX_SCATTER, _scatter

    rows = [{"index": float(i), "label": 0.0, "confidence": 0.5 + (i % 97) / 200, "variability": (i % 13) / 50,
             "correctness": 1.0, "noisy": float(i % 10 == 0)} for i in range(5000)]
    rows[4321]["confidence"] = 0.01
    chart, drawn = _scatter(rows)
    assert drawn <= MAX_SCATTER and "sample 4321:" in chart
    assert drawn == MAX_SCATTER and chart.count('fill-opacity="0.8"') == drawn  # one dot a sample drawn
    assert 0 < chart.count('fill="none" stroke="#111111"') - 1 <= MAX_SCATTER // 3  # flipped rings (+ the legend's)
