"""SIGTERM and SIGINT end a run as *interrupted*: a clean exception instead of a silent exit.

``scancel``, a SLURM time limit, Kubernetes and ``docker stop`` send SIGTERM; Ctrl-C sends SIGINT.
Left alone, Lightning turns a SIGTERM during ``fit`` into a ``SystemExit`` without a code (exit
status 0: a run that looks finished) and a SIGINT into ``sys.exit(1)``; outside ``fit`` SIGTERM kills
the process with no record at all. :func:`stop_signals_raise` makes both raise :class:`RunInterrupted`
wherever the run is (Lightning's own SIGTERM handler runs first and still ends DDP's other ranks),
and :func:`interruption` recognises every way a run can be stopped from outside, so that
:mod:`runner.run_wrapper` records it and exits with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT).

When another handler already owns SIGTERM (submitit's SLURM job, which bypasses it and requeues on
USR1), it is left in place: SLURM's requeue behaviour stays as it was.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["RunInterrupted", "exit_status", "interruption", "stop_signals_raise"]


class RunInterrupted(BaseException):
    """The run received a stop signal (not an ``Exception``: nothing may swallow it as a failure).

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _raise(signum: int, _frame: object) -> None:
    # a second signal while the run winds down gets the default behaviour (Ctrl-C twice forces it)
    signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
    raise RunInterrupted(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`RunInterrupted` (main thread only; a SIGTERM
    handler someone else installed, e.g. submitit's, stays). The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        if signal.getsignal(signum) in (default, signal.SIG_DFL, None):
            previous[signum] = signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interruption(exc: BaseException) -> str | None:
    """How ``exc`` stopped the run from outside (``"SIGTERM"``, ``"SIGINT"``, ``"exit -1"``), None when it
    is not a stop: a :class:`RunInterrupted`, Lightning's ``SIGTERMException``, a ``KeyboardInterrupt``,
    or a ``SystemExit`` raised inside the run (submitit's exit after requeueing a SLURM job)."""
    if isinstance(exc, RunInterrupted):
        return exc.name
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT"
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    if exceptions is not None and isinstance(exc, exceptions.SIGTERMException):
        return "SIGTERM"
    if isinstance(exc, SystemExit):
        return f"exit {exc.code}"
    return None


def exit_status(how: str) -> int | None:
    """The exit status for a stop: ``128 + signal`` for a signal, None to re-raise (any other exit)."""
    if how.startswith("SIG"):
        return 128 + int(getattr(signal, how))
    return None
