"""MetricsLineProgressBar: Lightning's RichProgressBar with the logged metrics on a line of their own.

Lightning's :class:`~lightning.pytorch.callbacks.RichProgressBar` puts the metrics in the last column
of the bar's row; with more than a few metrics rich wraps that column into a narrow block of 3 or
more lines, even in a 140-column terminal. Here the bar keeps its row and the metrics follow on the
next line, grouped by prefix (``train: loss 0.52 acc 0.81 | val: loss 0.61 acc 0.78 acc_best 0.8``),
cut with "..." rather than wrapped when the terminal is narrower than they are. Log records written
while the bar is drawn (``Trainer.fit stopped: ...``, a callback's warning) go through rich's
console, so each lands on a line of its own above the bar instead of being glued to the bar's last
line and then drawn over. Everything else (themes, ``leave``, ``refresh_rate``, ``console_kwargs``)
is Lightning's.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import CustomProgress, MetricsTextColumn, RichProgressBarTheme
from typing_extensions import override

__all__ = ["MetricsLineProgressBar", "metrics_line"]


def metrics_line(metrics: dict[str, Any], metrics_format: str = ".3g") -> list[str]:
    """The metrics grouped by their prefix, each group one string: ``{"train/loss": 0.5, "val/acc": 0.9}``
    -> ``["train: loss 0.5", "val: acc 0.9"]`` (names without a ``/`` form their own group, in order)."""
    groups: dict[str, list[str]] = {}
    for name, value in metrics.items():
        if not isinstance(value, str):
            try:
                value = f"{value:{metrics_format}}"
            except (TypeError, ValueError):
                value = str(value)
        head, _, tail = name.partition("/")
        key = f"{head}:" if tail else ""
        groups.setdefault(key, []).append(f"{tail or head} {value}")
    return [f"{key} {' '.join(items)}".strip() for key, items in groups.items()]


class _GroupedMetrics(MetricsTextColumn):
    """Lightning's metrics column, its text grouped by prefix (:func:`metrics_line`)."""

    def _generate_metrics_texts(self) -> Iterable[str]:
        yield from metrics_line(self._metrics, self._metrics_format)


class _MetricsBelow(CustomProgress):
    """A rich Progress whose metrics column is drawn as one line under the bars."""

    metrics_column: Any = None

    def get_renderables(self) -> Iterable[Any]:
        yield self.make_tasks_table(self.tasks)
        if self.metrics_column is None:
            return
        for task in self.tasks:
            text = self.metrics_column.render(task)
            if text.plain:
                text.no_wrap, text.overflow = True, "ellipsis"
                yield text
                return


class MetricsLineProgressBar(RichProgressBar):
    """A :class:`~lightning.pytorch.callbacks.RichProgressBar` whose metrics sit on one line under the bar.

    Args:
        metrics_format: the format of the values (default ``.3g``: 3 significant digits).
        theme: see ``RichProgressBar`` (its ``metrics_format`` is replaced by ``metrics_format``).
        **kwargs: ``RichProgressBar``'s other arguments (``refresh_rate``, ``leave``, ``console_kwargs``).
    """

    def __init__(self, metrics_format: str = ".3g", theme: RichProgressBarTheme | None = None, **kwargs: Any) -> None:
        theme = theme or RichProgressBarTheme()
        theme.metrics_format = metrics_format
        theme.metrics_text_delimiter = " | "
        super().__init__(theme=theme, **kwargs)

    #: ``(handler, its own stream)`` of the logging handlers sent through rich's console while the bar is drawn
    _rerouted: list[tuple[logging.StreamHandler, Any]]

    @override
    def _init_progress(self, trainer: pl.Trainer) -> None:
        super()._init_progress(trainer)
        self._reroute_logging()
        progress = self.progress
        if progress is not None and type(progress) is CustomProgress:
            progress.__class__ = _MetricsBelow
            progress.columns = tuple(c for c in progress.columns if c is not self._metric_component)
            progress.metrics_column = self._metric_component
            if type(self._metric_component) is MetricsTextColumn:
                self._metric_component.__class__ = _GroupedMetrics

    @override
    def _stop_progress(self) -> None:
        super()._stop_progress()
        self._restore_logging()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._restore_logging()

    def _reroute_logging(self) -> None:
        """Point the logging handlers that write to the terminal at rich's proxies of ``sys.stdout``/``sys.stderr``
        (rich draws their lines above the bar); a handler opened before the bar holds the real stream."""
        if getattr(self, "_rerouted", None):
            return
        self._rerouted = []
        proxies = {id(getattr(p, "rich_proxied_file", None)): p for p in (sys.stdout, sys.stderr)
                   if getattr(p, "rich_proxied_file", None) is not None}
        if not proxies:
            return
        known = logging.Logger.manager.loggerDict.values()
        loggers = [logging.getLogger(), *(v for v in known if isinstance(v, logging.Logger))]
        for logger in loggers:
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler and id(handler.stream) in proxies:
                    self._rerouted.append((handler, handler.stream))
                    handler.setStream(proxies[id(handler.stream)])

    def _restore_logging(self) -> None:
        for handler, stream in getattr(self, "_rerouted", None) or []:
            handler.setStream(stream)
        self._rerouted = []
