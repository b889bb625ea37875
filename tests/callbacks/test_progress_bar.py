"""MetricsLineProgressBar: the metrics on one line under the bar, not wrapped into a column beside it."""

from __future__ import annotations

import io
import logging
import re
import sys
from typing import Any

import pytest
import rich
from lightning.pytorch.callbacks import Callback, RichProgressBar
from rich.console import Console, Group
from tests.support.callback_fits import TinyData, TinyNet

from callbacks.progress_bar import MetricsLineProgressBar

NAMES = ("train/loss_step", "train/acc_step", "train/loss_epoch", "train/acc_epoch", "val/loss", "val/acc", "val/acc_best")


class Chatty(TinyNet):
    """TinyNet showing as many metrics in the progress bar as a real classifier run does."""

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        out = super().training_step(batch, batch_idx)
        for k, name in enumerate(NAMES):
            self.log(name, 0.123456 * (k + 1), prog_bar=True)
        return out


class Snapshot(Callback):
    """The bar as a 120-column terminal shows it, at the last training batch."""

    text = ""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = trainer.progress_bar_callback
        console = Console(width=120, file=io.StringIO(), record=True, color_system=None)
        console.print(Group(*bar.progress.get_renderables()))
        self.text = console.export_text()


@pytest.fixture
def quiet_console() -> Any:
    yield
    rich.reconfigure()  # the bar reconfigures rich's global console


@pytest.mark.parametrize("bar_class", [MetricsLineProgressBar, RichProgressBar])
def test_metrics_stay_on_one_line_at_120_columns(trainer_factory, quiet_console, bar_class) -> None:
    snapshot = Snapshot()
    bar = bar_class(console_kwargs={"file": io.StringIO(), "width": 120, "force_terminal": True})
    trainer = trainer_factory([bar, snapshot], logger="none", enable_progress_bar=True, limit_train_batches=2,
                              limit_val_batches=0)
    trainer.fit(Chatty(), TinyData(n=32))
    lines = [line for line in snapshot.text.splitlines() if line.strip()]
    if bar_class is RichProgressBar:  # Lightning's own wraps them into a column beside the bar
        assert len(lines) >= 3, snapshot.text
        return
    assert len(lines) == 2, snapshot.text  # the bar, then every metric on one line
    assert lines[0].startswith("Epoch 0/0"), snapshot.text
    assert lines[1].strip() == ("train: loss_step 0.123 acc_step 0.247 loss_epoch 0.37 acc_epoch 0.494 | "
                                "val: loss 0.617 acc 0.741 acc_best 0.864"), snapshot.text


def test_metrics_line_groups_by_prefix() -> None:
    from callbacks.progress_bar import metrics_line

    assert metrics_line({"v_num": 3, "train/loss": 0.51234, "val/acc": 0.5, "train/acc": "n/a"}) == [
        "v_num 3", "train: loss 0.512 acc n/a", "val: acc 0.5"]


class LogsAtTheEnd(Callback):
    """Logs a line while the bar is drawn, as Lightning does with "`Trainer.fit` stopped"."""

    def __init__(self, stream: Any) -> None:
        self.logger = logging.getLogger("tests.progress_bar.end")
        self.handler = logging.StreamHandler(stream)  # opened before the bar, on the terminal's stream
        self.logger.addHandler(self.handler)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.logger.warning("`Trainer.fit` stopped: `max_epochs=1` reached.")


def test_a_log_line_written_during_the_bar_gets_a_line_of_its_own(trainer_factory, quiet_console) -> None:
    terminal = io.StringIO()
    ends = LogsAtTheEnd(sys.stderr)
    bar = MetricsLineProgressBar(console_kwargs={"file": terminal, "width": 120, "force_terminal": True})
    try:
        trainer_factory([bar, ends], logger="none", enable_progress_bar=True, limit_train_batches=2,
                        limit_val_batches=0).fit(Chatty(), TinyData(n=32))
    finally:
        ends.logger.removeHandler(ends.handler)
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue()).replace("\r", "\n").splitlines()
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in lines, lines  # drawn by rich, alone on its line
    assert ends.handler.stream is sys.stderr  # given back when the bar stops
