"""Lockstep rounds of ``scripts/bench_callbacks.py``: fits in processes of their own taking turns a step at a time.

:func:`lockstep_round` starts one process per fit (spawned: each keeps its own torch thread pool
and heap) and :class:`Turns` lets only one of them run at a time, from the start of one of its
training steps to the start of its next; :class:`TurnTaker` and :class:`TurnEnd` add up each fit's
turns. Why lockstep: the docstring of ``scripts/bench_callbacks.py``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import resource
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from bench_fits import build, fit
from lightning.pytorch.callbacks import Callback

from runner.allocator import keep_freed_memory

__all__ = ["TurnEnd", "TurnTaker", "Turns", "lockstep_round", "turn_worker"]


class Turns:
    """Takes fits running in processes of their own in turns, one training step each: only the fit
    whose turn it is runs, from the start of one of its steps to the start of its next (data fetch,
    every hook and the epoch ends included), then hands over to the next unfinished fit. Processes,
    not threads: each fit keeps its own torch thread pool and heap, as a fit on its own has them."""

    def __init__(self, ctx: Any, n: int) -> None:
        self.gates = [ctx.Semaphore(0) for _ in range(n)]
        self.done = ctx.Array("b", n)
        self.started = ctx.Barrier(n, timeout=900)  # no fit steps before every fit is set up
        self.ended = ctx.Barrier(n, timeout=900)  # and no process exits (frees, tears down) while a fit steps
        self.gates[0].release()  # the first fit's turn

    def wait(self, i: int) -> None:
        self.gates[i].acquire()

    def hand_over(self, i: int, finished: bool = False) -> None:
        with self.done.get_lock():
            n = len(self.done)
            if finished:
                self.done[i] = 1
            j = (i + 1) % n
            while self.done[j] and j != i:
                j = (j + 1) % n
            if not self.done[j]:
                self.gates[j].release()


class TurnTaker(Callback):
    """First in a fit's callbacks: waits for the fit's turn at every step's start and adds up the wall
    time, CPU time and page faults of its turns (while one fit runs, the others wait)."""

    def __init__(self, turns: Turns, index: int) -> None:
        self.turns, self.index = turns, index
        self.seconds = self.cpu_seconds = 0.0
        self.faults = 0

    def _start(self) -> None:
        self.turns.wait(self.index)
        self._t, self._c = time.perf_counter(), time.process_time()
        self._f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def stop(self) -> None:
        self.seconds += time.perf_counter() - self._t
        self.cpu_seconds += time.process_time() - self._c
        self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self._f

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.turns.started.wait()
        self._start()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self.stop()
        self.turns.hand_over(self.index)
        self._start()


class TurnEnd(Callback):
    """Last in a fit's callbacks: its turn's clock stops at the end of training (the fit keeps the
    turn until ``trainer.fit`` returns, so its teardown overlaps no other fit's timed step)."""

    def __init__(self, taker: TurnTaker) -> None:
        self.taker = taker
        self.steps = 0

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.taker.stop()
        self.steps = trainer.global_step


def turn_worker(index: int, kind: str, settings: dict[str, Any], turns: Turns, results: Any) -> None:
    """One fit of a lockstep round, in a process of its own (set up like the sequential bench's)."""
    try:
        warnings.filterwarnings("ignore")
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        if settings["threads"]:
            torch.set_num_threads(settings["threads"])
        if not settings["glibc_malloc"]:
            keep_freed_memory()
        root = Path(settings["root"])
        fit("baseline", 10, settings["image_size"], settings["batch_size"], root / f"warmup{index}")  # one-time costs
        gc.collect()
        taker = TurnTaker(turns, index)
        trainer, model, data, extra = build(kind, settings["steps"], settings["image_size"], settings["batch_size"],
                                            root / kind, [taker])
        end = TurnEnd(taker)
        trainer.callbacks.append(end)
        trainer.fit(model, data)
        if end.steps != settings["steps"]:
            raise RuntimeError(f"{kind}: the fit ran {end.steps} steps, not {settings['steps']}")
        inside = sum(getattr(cb, "bench_seconds", 0.0) for cb in extra)
        results.put((kind, (taker.seconds, inside, taker.cpu_seconds, taker.faults)))
    except BaseException as error:  # noqa: BLE001 -- reported by the parent
        turns.started.abort()
        turns.ended.abort()
        results.put((kind, f"{type(error).__name__}: {error}"))
    finally:
        turns.hand_over(index, finished=True)
    try:
        turns.ended.wait()
    except threading.BrokenBarrierError:
        pass


def lockstep_round(order: list[str], args: argparse.Namespace, root: Path) -> dict[str, tuple[float, float, float, int]]:
    """One round: the fits of ``order``, each in a fresh process, taking turns a step at a time."""
    ctx = multiprocessing.get_context("spawn")  # fork would copy this process's torch thread pool state
    turns = Turns(ctx, len(order))
    results = ctx.Queue()
    settings = {"steps": args.steps, "image_size": args.image_size, "batch_size": args.batch_size,
                "threads": args.fit_threads, "glibc_malloc": args.glibc_malloc, "root": str(root)}
    procs = [ctx.Process(target=turn_worker, args=(i, kind, settings, turns, results), name=kind)
             for i, kind in enumerate(order)]
    for proc in procs:
        proc.start()
    out: dict[str, Any] = {}
    try:
        for _ in procs:
            kind, value = results.get(timeout=1800)
            if isinstance(value, str):
                raise RuntimeError(f"the {kind} fit of the round failed: {value}")
            out[kind] = value
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    return out
