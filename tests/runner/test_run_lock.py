"""One run at a time in a run directory (runner.run_lock): a second holder is refused, a dead one's lock taken over."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.artifacts import LOCK_FILE
from runner.run_lock import RunDirLocked, acquire, release
from tests.support.paths import REPO

HOLD = textwrap.dedent("""
    import sys, time
    from runner.run_lock import acquire
    acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_second_process_is_refused_naming_the_holder_then_may_take_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirLocked) as err:
            acquire(run_dir)
        assert str(err.value) == (f"{run_dir} is in use by another run (pid {holder.pid} on {socket.gethostname()}); "
                                  "wait for it, or choose another hydra.run.dir")
    finally:
        holder.kill()  # like kill -9: no release, the lock file keeps its content
        holder.wait()
    assert (run_dir / LOCK_FILE).read_text().split()[0] == str(holder.pid)
    # the operating system dropped the dead holder's flock: the lock is stale and taken over
    assert acquire(run_dir) == f"pid {holder.pid} on {socket.gethostname()}"
    assert acquire(run_dir) is None  # this process holds it already
    release(run_dir)
    assert not (run_dir / LOCK_FILE).exists()
    assert acquire(run_dir) is None  # a cleanly released lock is not stale
    release(run_dir)
