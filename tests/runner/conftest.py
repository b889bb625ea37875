"""Shared fixtures of the runner tests: the repo path and a Hydra compose helper."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write

from tests.support.paths import REPO

CONF = REPO / "conf"


def job_config(cfg: DictConfig) -> DictConfig:
    """The config a run's task function gets: everything but the ``hydra`` node."""
    job = copy.deepcopy(cfg)
    with read_write(job), open_dict(job):
        del job["hydra"]
    return job


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """``compose_cfg(*overrides)``: ``train`` composed with the hydra node, as a run would see it.

    Outputs go under ``tmp_path``: ``paths.log_dir`` is overridden (unless the caller sets it)
    and ``hydra.runtime.output_dir`` is ``tmp_path/run``, so ``${hydra:...}`` interpolations
    resolve once :class:`HydraConfig` is set (done here; reset after the test).
    """

    def _compose(*overrides: str, output_dir: Path | None = None, job: bool = False) -> DictConfig:
        ovr = list(overrides)
        if not any(o.startswith("paths.log_dir=") for o in ovr):
            ovr.append(f"paths.log_dir={tmp_path / 'outputs'}")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=ovr, return_hydra_config=True)
        out = output_dir or tmp_path / "run"
        out.mkdir(parents=True, exist_ok=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(out)
            cfg.hydra.runtime.cwd = str(REPO)
            cfg.hydra.job.num = 0
            cfg.hydra.job.id = "0"
        HydraConfig.instance().set_config(cfg)
        return job_config(cfg) if job else cfg

    yield _compose
    HydraConfig.instance().cfg = None


@pytest.fixture
def job_of() -> Callable[[DictConfig], DictConfig]:
    """``job_of(cfg)``: ``cfg`` without its hydra node, as the task function gets it."""
    return job_config
