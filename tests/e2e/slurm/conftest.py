"""A real one-node SLURM cluster for the tests marked ``slurm`` (``scripts/slurm_local.py``).

The session fixture :func:`slurm_cluster` starts munged, slurmctld and slurmd (installing Debian's
``slurm-wlm`` and ``munge`` through apt-get when missing and possible), exports ``SLURM_CONF`` for
the test process and the ``run.py`` subprocesses it starts, and at the end of the session (also
when a test failed) cancels every job and stops exactly the daemons it started. A cluster that was
already running from the same folder (``make slurm-up``) is used and left running. Where SLURM
cannot be started, every test that needs it fails with one line saying why: never a silent skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.slurm import REPO, Cluster

SCRIPT = REPO / "scripts" / "slurm_local.py"
# the folder `make slurm-up` uses: a cluster a user started there is used by the tests and left running
# (a second cluster could not run beside it: the SLURM ports are the same)
CLUSTER_DIR = Path(os.environ.get("SLURM_LOCAL_DIR", "/tmp/vision-runner-slurm"))


def _script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--dir", str(CLUSTER_DIR)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    """The local SLURM cluster, up for the whole session; ``pytest.fail`` in one line when it cannot start."""
    was_running = (CLUSTER_DIR / "started.json").exists() and _script("status", timeout=30).returncode == 0
    proc = _script("start")
    if proc.returncode != 0:
        why = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        pytest.fail(f"SLURM cannot be started here: {why[0]}", pytrace=False)
    cluster = Cluster(CLUSTER_DIR / "slurm.conf", started_here=not was_running)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if cluster.started_here:
            stop = _script("stop", timeout=120)
            assert stop.returncode == 0, stop.stderr


