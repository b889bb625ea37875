"""Settings shared by every test: no network, nothing written outside tmp folders."""

import os
import signal

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

# Ctrl-C as a terminal gives it: a suite started in the background of a non-interactive shell (`make
# test &`) inherits SIGINT ignored, which run.py rightly keeps ignored, so the interrupt tests (in this
# process, and in the run.py children, which inherit an ignored signal but not a handler) would wait
# for a KeyboardInterrupt that never comes.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: tests that share state across tests stay together on one xdist worker, in order: the README's
#: commands run in one scratch directory (a resume uses the run an earlier command made), and the
#: SLURM tests share the one local cluster (its ports are fixed); the detection e2e tests and the
#: faults tests share one expensive module fixture each (a real 12-epoch detector, ~190 s; four
#: interrupted runs, ~40 s), which split over two workers ran twice. Every other test is its own unit.
_GROUPS = {"tests/e2e/test_readme.py": "readme", "tests/e2e/slurm/": "slurm", "tests/e2e/detection/": "detection",
           "tests/e2e/test_faults.py": "faults"}


def group_of(nodeid: str) -> str:
    """The unit a test is scheduled in: its group's name, else its own node id."""
    return next((name for prefix, name in _GROUPS.items() if nodeid.startswith(prefix)), nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In xdist workers: the groups first (the README commands, the longest unit, then the SLURM tests), so
    they start at once on their workers while the other tests fill the time around them."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    order = list(_GROUPS.values())
    items.sort(key=lambda item: order.index(g) if (g := group_of(item.nodeid)) in order else len(order))


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    """``make test`` (``-n 2 --dist load``): load balancing, but a group's tests all go to one worker, in
    collection order. (xdist's own ``--dist loadgroup`` marks tests by rewriting their node ids, which
    pytest 9 no longer reads: the groups were silently split over the workers.)"""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)
