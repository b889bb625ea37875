"""One real training run of ``experiment=shapes_detection``, shared by the detection tests."""

from __future__ import annotations

import pytest
from tests.support.detection import LOGGERS, DetectionRun, run_script


@pytest.fixture(scope="session")
def detection_run(tmp_path_factory: pytest.TempPathFactory) -> DetectionRun:
    """``python run.py experiment=shapes_detection callbacks=all`` with every logger, trained once."""
    root = tmp_path_factory.mktemp("detection")
    run_dir = root / "run"
    res = run_script(
        "run.py", "experiment=shapes_detection", "callbacks=all", LOGGERS, "print_config=false",
        "callbacks.interpretation.log_every_n_epochs=4", "callbacks.gram_matrix.log_every_n_steps=200",
        f"hydra.run.dir={run_dir}", out_dir=root / "outputs",
    )
    assert res.returncode == 0, res.output[-4000:]
    return DetectionRun(run_dir, res.output, res.seconds)
