"""Settings shared by every test: no network, nothing written outside tmp folders."""

import os

import pytest

# wandb never reaches the network in tests, and stays quiet.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
# Lightning's tip messages and the like are not wanted in test logs.
os.environ.setdefault("PYTHONWARNINGS", "ignore")

# `make test` runs the suite in pytest-xdist workers, one per core: each worker's torch, and the
# run.py / DDP processes it starts (they inherit OMP_NUM_THREADS), use one thread instead of all cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

#: tests that share state across tests stay together on one xdist worker (``--dist loadgroup``), in order:
#: the README's commands run in one scratch directory (a resume uses the run an earlier command made),
#: and the SLURM tests share the one local cluster (its ports are fixed).
_GROUPS = {"tests/e2e/test_readme.py": "readme", "tests/e2e/slurm/": "slurm"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = next((name for prefix, name in _GROUPS.items() if path.startswith(prefix)), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _no_wandb_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """wandb must run offline as a user without an account would: no key, no ~/.netrc."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path_factory.getbasetemp() / "no-netrc"))
