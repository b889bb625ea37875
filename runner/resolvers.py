"""OmegaConf resolvers the configs use; registered when ``runner`` is imported (only omegaconf is imported)."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

__all__ = ["parallel_jobs", "register_resolvers"]


def parallel_jobs(n_jobs: int | str) -> int:
    """joblib's ``n_jobs`` as a number of jobs: n > 0 as is, -1 = one per CPU core, -2 = all but one, ...

    ``hparams_search=optuna`` uses it so the sweeper asks for as many trials at once as the
    launcher runs (``hydra.sweeper.n_jobs: ${parallel_jobs:${oc.select:hydra.launcher.n_jobs,1}}``).
    """
    n = int(n_jobs)
    return n if n > 0 else max(1, (os.cpu_count() or 1) + 1 + n)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs, replace=True)
