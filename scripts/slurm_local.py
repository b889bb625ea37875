#!/usr/bin/env python3
"""A real one-node SLURM cluster on this machine, to try (and test) the SLURM path without a cluster.

    python scripts/slurm_local.py start    # install slurm-wlm + munge when missing, start munged,
                                           # slurmctld and slurmd, wait until the node is idle
    export SLURM_CONF=/tmp/vision-runner-slurm/slurm.conf   # the path `start` prints
    python scripts/slurm_local.py status   # the daemons' pids and `sinfo`
    python scripts/slurm_local.py stop     # cancel the cluster's jobs, end exactly the daemons `start` started

Everything the cluster writes (config, state, spool, logs, pid files) is under one folder,
``--dir`` (default ``$SLURM_LOCAL_DIR`` or ``/tmp/vision-runner-slurm``). ``start`` records which
daemons it started in ``<dir>/started.json``; ``stop`` ends only those, by pid, and leaves alone a
munged that was already running. Needs root (munged runs as the ``munge`` user, the SLURM daemons
as root) and Debian's packages (``apt-get install slurm-wlm munge``, Slurm 22.05 on bookworm).

The config is the smallest that runs as root in a container: ``proctrack/linuxproc``,
``task/none``, no accounting (``sacct`` does not work; use ``squeue``/``scontrol show job``),
``select/cons_tres`` with ``CR_CPU_Memory``, one node with this machine's CPUs and 80% of its
memory, one default partition ``local``. Exit status 1 with one line saying why when it cannot start.
Only the standard library: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("SLURM_LOCAL_DIR", "/tmp/vision-runner-slurm"))
PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged")
MUNGE_DIRS = ("/run/munge", "/var/log/munge", "/var/lib/munge", "/etc/munge")


class ClusterError(RuntimeError):
    """The cluster cannot be started here; the message says why in one line."""


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _env(conf: Path) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(conf)}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie has exited: count it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def ensure_packages() -> None:
    """Install slurm-wlm and munge through apt-get when a daemon is missing (as `make chromium` does)."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if not missing:
        return
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo"):
        sudo = ["sudo"]
    else:
        raise ClusterError(f"{', '.join(missing)} not installed, and no root or sudo to install {' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise ClusterError(f"{', '.join(missing)} not installed, and no apt-get to install {' '.join(PACKAGES)}")
    print(f"Installing {' '.join(PACKAGES)} (apt-get) for the local SLURM cluster", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        proc = subprocess.run([*sudo, *cmd], env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise ClusterError(f"`{' '.join(cmd)}` failed (status {proc.returncode}): {tail[0]}")


def _slurm_conf(base: Path) -> str:
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as fh:
        mem_mb = next(int(line.split()[1]) // 1024 for line in fh if line.startswith("MemTotal:"))
    real_mb = max(512, int(mem_mb * 0.8))
    return "\n".join([
        "# written by scripts/slurm_local.py: a one-node cluster on this machine",
        "ClusterName=local",
        f"SlurmctldHost={host}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU_Memory",
        "MpiDefault=none",
        "ReturnToService=2",
        # a cancelled or requeued job's processes get SIGKILL this long after SIGTERM (default 30 s)
        "KillWait=5",
        # finished jobs stay visible to `scontrol show job` this long (there is no accounting)
        "MinJobAge=600",
        "SchedulerType=sched/backfill",
        f"StateSaveLocation={base / 'state'}",
        f"SlurmdSpoolDir={base / 'spool'}",
        f"SlurmctldPidFile={base / 'slurmctld.pid'}",
        f"SlurmdPidFile={base / 'slurmd.pid'}",
        f"SlurmctldLogFile={base / 'slurmctld.log'}",
        f"SlurmdLogFile={base / 'slurmd.log'}",
        f"NodeName={host} CPUs={cpus} RealMemory={real_mb} State=UNKNOWN",
        # without --mem a job would take the whole node's memory and jobs could not run side by side
        f"PartitionName=local Nodes={host} Default=YES MaxTime=INFINITE State=UP DefMemPerCPU={real_mb // cpus}",
        "",
    ])


def _munge_works() -> bool:
    if shutil.which("munge") is None or shutil.which("unmunge") is None:
        return False
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        if cred.returncode != 0:
            return False
        return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_munged() -> int | None:
    """Start munged as the munge user unless one already answers; return its pid if we started it."""
    if _munge_works():
        return None
    import pwd

    try:
        user = pwd.getpwnam("munge")
    except KeyError as err:
        raise ClusterError("no `munge` user (is the munge package installed?)") from err
    for folder in MUNGE_DIRS:
        os.makedirs(folder, exist_ok=True)
        os.chown(folder, user.pw_uid, user.pw_gid)
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chown(key, user.pw_uid, user.pw_gid)
    key.chmod(0o400)
    proc = _run(["su", "-s", "/bin/sh", "munge", "-c", "munged --force"])
    if proc.returncode != 0:
        raise ClusterError(f"munged did not start: {(proc.stderr or proc.stdout).strip()}")
    for _ in range(50):
        if _munge_works():
            return _read_pid(Path("/run/munge/munged.pid"))
        time.sleep(0.1)
    raise ClusterError("munged started but `munge -n | unmunge` fails (see /var/log/munge/munged.log)")


def _node_state(conf: Path) -> str:
    proc = _run(["sinfo", "-h", "-N", "-o", "%T"], env=_env(conf), timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _daemon_pids(base: Path) -> dict[str, int | None]:
    return {"slurmctld": _read_pid(base / "slurmctld.pid"), "slurmd": _read_pid(base / "slurmd.pid")}


def start(base: Path, timeout: float = 60) -> Path:
    """Start the cluster (or find the one already running from ``base``); return its ``slurm.conf``."""
    conf = base / "slurm.conf"
    if os.geteuid() != 0:
        raise ClusterError("the SLURM daemons must run as root here (SlurmUser=root); run as root")
    ensure_packages()
    started_file = base / "started.json"
    if started_file.exists() and all(_alive(p) for p in _daemon_pids(base).values()):
        print(f"SLURM already running from {base}")
        print(f"export SLURM_CONF={conf}")
        return conf
    for sub in ("state", "spool"):
        shutil.rmtree(base / sub, ignore_errors=True)
        (base / sub).mkdir(parents=True)
    conf.write_text(_slurm_conf(base))
    started: dict[str, int | None] = {"munged": _start_munged()}
    started_file.write_text(json.dumps(started))
    env = _env(conf)
    for daemon in ("slurmctld", "slurmd"):
        flags = ["-c"] if daemon == "slurmctld" else []  # -c: no jobs from an earlier cluster's state
        proc = _run([daemon, *flags, "-f", str(conf)], env=env)
        pid = None
        for _ in range(50):
            pid = _daemon_pids(base)[daemon]
            if _alive(pid):
                break
            time.sleep(0.1)
        started[daemon] = pid if _alive(pid) else None
        started_file.write_text(json.dumps(started))
        if not started[daemon]:
            log = base / f"{daemon}.log"
            last = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            stop(base, quiet=True)
            why = (proc.stderr or proc.stdout).strip() or (last[0] if last else "no log")
            raise ClusterError(f"{daemon} did not start: {why}")
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _node_state(conf)
        if state in ("idle", "mixed", "allocated"):
            print(f"SLURM is up: node {socket.gethostname().split('.')[0]} {state}, {os.cpu_count()} CPUs")
            print(f"export SLURM_CONF={conf}")
            return conf
        time.sleep(0.5)
    stop(base, quiet=True)
    raise ClusterError(f"the node did not become idle within {timeout:.0f} s (sinfo says {state or 'nothing'}; "
                       f"see {base}/slurmd.log)")


def stop(base: Path, quiet: bool = False) -> None:
    """Cancel the cluster's jobs, then end the daemons ``start`` started (by their pids), and only those."""
    started_file = base / "started.json"
    if not started_file.exists():
        if not quiet:
            print(f"No local SLURM cluster started from {base}")
        return
    started = json.loads(started_file.read_text())
    conf = base / "slurm.conf"
    if _alive(started.get("slurmctld")):
        env = _env(conf)
        _run(["scancel", "--full", "--quiet", "--partition", "local"], env=env, timeout=20)
        deadline = time.monotonic() + 30  # KillWait=5: cancelled jobs end in seconds
        while time.monotonic() < deadline:
            proc = _run(["squeue", "-h", "-o", "%i"], env=env, timeout=10)
            if proc.returncode != 0 or not proc.stdout.strip():
                break
            time.sleep(0.5)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = started.get(name)
        if not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        if not quiet:
            print(f"stopped {name} (pid {pid})")
    started_file.unlink()


def status(base: Path) -> int:
    """Print the daemons' state and ``sinfo``; 0 when the cluster answers."""
    started_file = base / "started.json"
    if not started_file.exists():
        print(f"No local SLURM cluster started from {base}")
        return 1
    started = json.loads(started_file.read_text())
    for name in ("munged", "slurmctld", "slurmd"):
        pid = started.get(name)
        what = "already running before start (left alone)" if name == "munged" and pid is None else (
            f"pid {pid} {'running' if _alive(pid) else 'NOT running'}")
        print(f"{name}: {what}")
    conf = base / "slurm.conf"
    proc = _run(["sinfo"], env=_env(conf), timeout=10)
    print(proc.stdout.strip() or proc.stderr.strip())
    print(f"export SLURM_CONF={conf}")
    return 0 if proc.returncode == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where everything goes (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    base = args.dir.resolve()
    try:
        if args.command == "start":
            base.mkdir(parents=True, exist_ok=True)
            start(base)
        elif args.command == "stop":
            stop(base)
        else:
            return status(base)
    except (ClusterError, OSError, subprocess.SubprocessError) as err:
        print(f"Error: cannot start a local SLURM cluster: {err}" if args.command == "start" else f"Error: {err}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
