"""Stop signals raise inside the run (runner.interrupts); every way a run is stopped from outside is recognised."""

from __future__ import annotations

import os
import signal
import time

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from runner.interrupts import RunInterrupted, exit_status, interruption, stop_signals_raise


def test_sigterm_raises_inside_the_block_and_the_handler_comes_back() -> None:
    with pytest.raises(RunInterrupted) as err, stop_signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert interruption(err.value) == "SIGTERM" and exit_status("SIGTERM") == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_someone_else_installed_stays() -> None:
    def owner(signum, frame) -> None:  # submitit's bypass, say
        seen.append(signum)

    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, owner)
    try:
        with stop_signals_raise():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_every_stop_is_recognised_and_failures_are_not() -> None:
    assert interruption(SIGTERMException()) == "SIGTERM"  # Lightning's, when its handler ran alone
    assert interruption(KeyboardInterrupt()) == "SIGINT" and exit_status("SIGINT") == 130
    assert interruption(SystemExit(-1)) == "exit -1" and exit_status("exit -1") is None
    assert interruption(ValueError("x")) is None
