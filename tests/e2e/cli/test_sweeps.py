"""`hparams_search=optuna hydra/launcher=joblib` runs trials in parallel, as the README says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.slow


def test_optuna_with_joblib_runs_trials_at_the_same_time(cli, tmp_path: Path) -> None:
    res = cli("-m", "hparams_search=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
              "hydra.sweeper.n_trials=2", "debug=fdr")
    assert res.returncode == 0, res.output[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("job_result.json")]
    assert len(results) == 2 and all(r["status"] == "ok" for r in results), results
    (a_start, a_end), (b_start, b_end) = sorted((r["started_at"], r["finished_at"]) for r in results)
    # the second trial started before the first one finished: they ran at the same time
    assert b_start < a_end, (a_start, a_end, b_start, b_end)
    assert len({r["output_dir"] for r in results}) == 2


def test_optuna_sweeper_asks_for_as_many_trials_as_the_launcher_runs(compose_sweeper) -> None:
    assert compose_sweeper("hydra/launcher=joblib", "hydra.launcher.n_jobs=3") == 3
    assert compose_sweeper("hydra/launcher=joblib") >= 1  # joblib's default -1: one per CPU core
    assert compose_sweeper() == 1  # the basic launcher runs one job at a time
    assert compose_sweeper("hydra/launcher=joblib", "hydra.sweeper.n_jobs=5") == 5


@pytest.fixture
def compose_sweeper():
    from hydra import compose, initialize_config_dir

    import runner  # noqa: F401 - registers the resolvers

    conf = REPO / "conf"

    def _n_jobs(*overrides: str) -> int:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("train", overrides=["hparams_search=optuna", *overrides], return_hydra_config=True)
        return int(cfg.hydra.sweeper.n_jobs)

    return _n_jobs
