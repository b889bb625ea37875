"""Every command of README.md's ```bash blocks, run as a user would run it.

The commands are parsed from README.md, so the docs and the tests cannot drift. The rules (also
written in the README's "Tests and benchmarks" section):

- each command runs verbatim as a subprocess, in README order, in one scratch directory (a copy of
  ``run.py`` next to links to the packages and ``conf/``), so relative ``outputs/...`` paths of one
  command are there for the next (e.g. train, then resume the same run);
- ``python`` becomes this interpreter; training commands get ``trainer.max_epochs=1`` appended
  (except resume chains: a command with ``ckpt_path=`` or ``hydra.run.dir=`` keeps its own
  ``trainer.max_epochs``) and ``++trainer.limit_{train,val,test}_batches``; callbacks and progress
  bars stay on;
- ``make ...`` lines are the set-up commands and are not run;
- ``python explain.py`` and ``python -m runner.report`` commands run as written (they train nothing);
  ``runner.report`` of a run directory gets the README command that made it first; the scratch directory holds
  ``cat.png`` and ``dog.jpg``, the user's pictures they name;
- a command marked ``# [cluster]`` needs hardware CI does not have: it is only composed,
  ``python run.py <overrides without -m> --cfg all``;
- a command marked ``# [network]`` needs the network (the Hugging Face hub): it is only composed, like
  ``# [cluster]``'s;
- a command marked ``# [slurm]`` submits real jobs to the one-node SLURM cluster the tests start on
  this machine: ``tests/test_slurm/test_readme_slurm.py`` runs it, by the same rules as here (its
  session fixture starts the cluster), and checks its jobs; this module checks that such lines exist;
- each command has a hard timeout: a hang fails in minutes, and its whole process group is killed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.readme]

from tests.support.paths import REPO

README = REPO / "README.md"
TIMEOUT_S = 420  # per command; DDP jobs start two processes on a busy 2-core machine
CLUSTER_MARK = "[cluster]"
SLURM_MARK = "[slurm]"
NETWORK_MARK = "[network]"  # needs the Hugging Face hub: only composed
LIMITS = ("++trainer.limit_train_batches=5", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2")
NO_TRAINING = ("--help", "-h", "--cfg", "--info")


@dataclass(frozen=True)
class Command:
    text: str  # as written in the README (continuation lines joined, comment dropped)
    line: int
    cluster: bool
    slurm: bool = False  # run against the local SLURM cluster, by tests/test_slurm/test_readme_slurm.py
    network: bool = False  # needs the Hugging Face hub: only composed, like a cluster line

    @property
    def script(self) -> str:
        """``run.py``, ``explain.py`` or ``-m`` (``python -m runner.report``): the entry point the command runs."""
        words = shlex.split(self.text)
        assert words[:1] == ["python"] and (words[1:2] in (["run.py"], ["explain.py"])
                                            or words[1:3] == ["-m", "runner.report"]), (
            f"README line {self.line}: not a `python run.py`, `python explain.py` or `python -m runner.report` "
            f"command: {self.text}"
        )
        return words[1]

    @property
    def args(self) -> list[str]:
        """The words after ``python run.py`` (or ``python explain.py``)."""
        self.script  # noqa: B018 - checks the command's form
        return shlex.split(self.text)[2:]


def readme_commands(text: str) -> list[Command]:
    """The commands of every ```bash block (``make`` lines excluded), continuation lines joined."""
    commands: list[Command] = []
    in_bash = False
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("```"):
            in_bash = line == "```bash" and not in_bash
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        pending += (" " if pending else "") + line
        if line.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        full, pending = pending, ""
        code, _, comment = full.partition(" #") if not full.startswith("#") else ("", "", full)
        code = code.strip()
        if not code or code.startswith("make "):
            continue
        commands.append(Command(code, start, CLUSTER_MARK in comment, SLURM_MARK in comment, NETWORK_MARK in comment))
    return commands


_UNIQUE: dict[str, Command] = {}
for _cmd in readme_commands(README.read_text()):
    _UNIQUE.setdefault(_cmd.text, _cmd)  # a command shown twice runs once
COMMANDS = list(_UNIQUE.values())
# the [slurm] lines run in tests/test_slurm/test_readme_slurm.py, against the local SLURM cluster
LOCAL_COMMANDS = [c for c in COMMANDS if not c.slurm]


def test_the_readme_has_the_commands_this_test_expects() -> None:
    """The parser finds the documented commands (a broken parser must not make the test vacuous)."""
    texts = [c.text for c in COMMANDS]
    assert "python run.py" in texts and "python run.py --help" in texts
    assert any("ckpt_path=last" in t for t in texts)
    assert any(c.cluster and "hydra/launcher=slurm" in c.text for c in COMMANDS)
    # the CPU twins of the cluster line, run for real by tests/test_slurm/test_readme_slurm.py
    assert any(c.slurm and "hydra/launcher=submitit_slurm" in c.text for c in COMMANDS)
    assert any(c.slurm and "hydra/launcher=slurm_cpu" in c.text for c in COMMANDS)
    assert not any(t.startswith("make") for t in texts)
    assert len(COMMANDS) >= 15, texts


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory to run the README's commands from: outputs/ lands here."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copy2(REPO / "run.py", root / "run.py")
    shutil.copy2(REPO / "explain.py", root / "explain.py")
    # the pictures the explain.py examples name (a user's own files): other sizes and modes than the model's
    from PIL import Image

    Image.new("RGB", (96, 64), (220, 120, 40)).save(root / "cat.png")
    Image.new("L", (50, 70), 128).save(root / "dog.jpg")
    for name in ("conf", "runner", "callbacks", "interpret", "hydra_plugins"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    return root


def _argv(cmd: Command) -> list[str]:
    args = cmd.args
    if cmd.script in ("explain.py", "-m"):
        return args  # explain.py and runner.report train nothing: run as written
    if cmd.cluster or cmd.network:
        return [a for a in args if a not in ("-m", "--multirun")] + ["--cfg", "all"]
    if any(a in NO_TRAINING for a in args):
        return args
    # a resume chain (ckpt_path, or a fixed run directory that a later command resumes) keeps its epochs
    chain = any(a.startswith(("ckpt_path=", "hydra.run.dir=")) for a in args)
    extra = [] if chain and any(a.startswith("trainer.max_epochs=") for a in args) else ["trainer.max_epochs=1"]
    return [*args, *extra, *LIMITS]


def _run(argv: list[str], cwd: Path, script: str = "run.py") -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNNER_OUTPUT_DIR", "HYDRA_FULL_ERROR")}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, script, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and every rank it started
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {TIMEOUT_S} s (a hang?): python {script} {' '.join(argv)}\n{out[-3000:]}")
    return proc.returncode, out, time.monotonic() - t0


def _prerequisite(cmd: Command, cwd: Path) -> None:
    """A command that reads an earlier run (resume, fine-tune) gets it: the README command that made it runs first."""
    for path in re.findall(r"(?:ckpt_path=|weights_path=|runner\.report )(outputs/\S+)", cmd.text):
        run_dir = Path(path.split("/checkpoints/")[0])
        if (cwd / path).exists():
            continue
        maker = next(c for c in COMMANDS if f"hydra.run.dir={run_dir}" in c.text and "ckpt_path" not in c.text)
        code, out, _ = _run(_argv(maker), cwd)
        assert code == 0, f"README line {maker.line} (needed by line {cmd.line}) failed:\n{out[-3000:]}"


def command_id(c: Command) -> str:
    """A test id: the command's overrides (or what follows ``python``), at most 60 characters."""
    return (c.text[len("python run.py "):] if c.script == "run.py" else c.text[len("python "):])[:60] or "default"


@pytest.mark.parametrize("cmd", LOCAL_COMMANDS, ids=[command_id(c) for c in LOCAL_COMMANDS])
def test_readme_command(cmd: Command, workspace: Path) -> None:
    _prerequisite(cmd, workspace)
    argv = _argv(cmd)
    code, out, seconds = _run(argv, workspace, cmd.script)
    print(f"README line {cmd.line}: {seconds:.1f} s: python {cmd.script} {' '.join(argv)}")
    assert code == 0, f"README line {cmd.line}: python {cmd.script} {' '.join(argv)}\n{out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    if cmd.script == "-m":  # python -m runner.report <run dir>
        assert (workspace / cmd.args[-1] / "report.html").is_file() and "report.html" in out, out[-3000:]
        return
    if cmd.script == "explain.py":
        assert "Output dir:" in out, out[-3000:]
        if "metrics=true" in cmd.text:
            assert "Explanation quality" in out, out[-3000:]
        return
    if cmd.cluster:
        assert "SlurmLauncher" in out and "tasks_per_node" in out
    if "--help" in argv:
        assert "hparams_search" in out
    if "ckpt_path=" in cmd.text:
        assert "Restoring states from the checkpoint" in out
    if cmd.network:
        assert "_target_" in out, out[-3000:]
        return
    if "weights_path=" in cmd.text:
        assert re.search(r"Loaded \d+ of \d+ tensors", out), out[-3000:]
