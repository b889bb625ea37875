"""End-to-end benchmark of ``python run.py`` training against a plain PyTorch loop (ratios; machines are noisy).

Every side runs as a fresh process, alternately, ``--repeats`` times; medians are printed. The sides:
the plain loop, ``python run.py`` as users run it, and ``python run.py keep_freed_memory=false``.

- ``python run.py`` with the default experiment as users get it (digits, timm resnet18, batch 64,
  AdamW + cosine, ModelCheckpoint best+last, EarlyStopping, RichProgressBar, LearningRateMonitor,
  csv logger, the sanity check), ``trainer.max_epochs=--epochs``, ``test=false``. A timing callback
  records when ``fit`` starts and ends, and the time of its sanity check, validation passes and
  checkpoint writes.
- A plain PyTorch loop, independent of this project's code, doing the same work: the same timm
  model, the same digits data prepared the same way (8x8 scans resized to 32 px, 3 channels, timm's
  mean/std, 70/15/15 stratified split), the same batch size, optimizer and schedule; the same sanity
  check as Lightning's default (two validation batches before the first epoch); each epoch a
  training pass, a validation pass, the checkpoints (best when it improves, and last; both hold
  model, optimizer and scheduler state, like Lightning's), the early-stopping bookkeeping, a
  progress line and a CSV row. (run.py's ``last_checkpoint`` writes last.ckpt every epoch, as the
  plain loop does, so both sides write the same files.)

Reported separately: start-up (process start -> fit start: imports, config, data, model), training
(fit start -> fit end: sanity check, all epochs with their validation passes and checkpoints), split
the same way on both sides (sanity check, validation, checkpoint saves, training steps and the rest),
with wall and CPU seconds. The throughput ratio is run.py's samples/s over the plain loop's in the
same repeat (the two run back to back, so the machine's drift cancels), median over repeats (target
>= 0.95); the same ratio of CPU time is steadier on a shared machine (``--threads 1``: the work
done). Also the wall time of ``python run.py --help`` (target <= 1.0 s).

Where run.py's time went, and what was fixed (cProfile and these splits, 2026-11-26):
- checkpoints: Lightning's ``TorchCheckpointIO`` serialised each 134 MB checkpoint into a BytesIO and
  copied it twice before writing: ~3x the plain loop's ``torch.save`` (+6-8% of a 3-epoch fit).
  Fixed: ``runner.checkpoint_io.LocalAtomicCheckpointIO`` (default trainer plugin) saves like the plain
  loop, to a temporary file renamed over the target.
- the sanity check: the plain loop did none; now both do the same two batches. run.py's is still
  ~0.2-0.3 s longer (first-time costs: the evaluation loop's set-up, the progress bar's start, the
  first ``self.log`` calls filling Python's isinstance caches), ~2% of a 3-epoch fit, less in longer runs.
- per training step, Lightning's loop and hooks, the two ``self.log`` calls (~1 ms each in
  Lightning's result collection), torchmetrics updates, the progress bar: ~2-8 ms per step over the
  plain loop (at 1 thread, CPU time: +4.5 ms on ~340 ms steps, 1.3%); epoch-level metrics now use
  ``update()`` (a ``forward()`` also computed a batch value every step). Turning the progress bar
  off made no difference beyond the noise.

- page faults (perf, 2026-11-26): with glibc's malloc defaults 5-7% of the fit's CPU samples were the
  kernel zeroing pages (``clear_page_erms``), ~300k (130k-700k) page faults per 3-epoch fit, varying
  from process to process with the heap's history: the largest single source of the noise between
  repeats, and of run.py's gap (its heap, after Hydra's and Lightning's imports, faulted more).
  Fixed for run.py: ``keep_freed_memory: true`` (``runner/allocator.py``: glibc's ``mallopt`` with a
  fixed mmap threshold and a 1 GiB trim threshold) keeps freed memory in the process: ~50k faults,
  same peak memory. The plain loop keeps glibc's defaults, as plain PyTorch does; the third side,
  run.py with ``keep_freed_memory=false``, shows the ratio without it.

Usage: python scripts/bench_runner.py [--repeats 5] [--epochs 3] [--help-repeats 5] [--threads N]
                                      [--override KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

class Clock:
    """Wall and CPU (process) seconds of named, non-overlapping spans of a fit, plus the whole fit.

    CPU time is the process's (all its threads): on a machine shared with other jobs it is far
    steadier than wall time, and with ``--threads 1`` it measures the work done.
    """

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.time(), time.process_time()
        self.usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.spans: dict[str, list[float]] = {}
        self._open: dict[str, tuple[float, float]] = {}

    def begin(self, name: str) -> None:
        self._open[name] = (time.perf_counter(), time.process_time())

    def end(self, name: str) -> None:
        if name not in self._open:
            return
        wall, cpu = self._open.pop(name)
        span = self.spans.setdefault(name, [0.0, 0.0])
        span[0] += time.perf_counter() - wall
        span[1] += time.process_time() - cpu

    def result(self, samples: int, steps: int) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"fit_start": self.wall0, "fit_end": time.time(), "fit_cpu": time.process_time() - self.cpu0,
                "fit_sys": usage.ru_stime - self.usage0.ru_stime, "fit_faults": usage.ru_minflt - self.usage0.ru_minflt,
                "samples": samples, "steps": steps, "spans": self.spans}


try:  # the timing callback run.py instantiates (+callbacks.bench_timer._target_=scripts.bench_runner.FitTimer)
    import lightning.pytorch as pl

    class FitTimer(pl.Callback):
        """Writes the fit's wall/CPU time, its spans (sanity check, validation, checkpoint saves) and
        the samples processed (training + validation, not the sanity check) to ``out_file``."""

        def __init__(self, out_file: str) -> None:
            self.out_file = out_file
            self.clock = Clock()
            self.samples = 0
            self.steps = 0

        def on_fit_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.clock = Clock()
            save = trainer.save_checkpoint

            def timed_save(*args, **kwargs):  # every checkpoint write (ModelCheckpoint: best and last)
                validating = "validation" in self.clock._open
                if validating:
                    self.clock.end("validation")
                self.clock.begin("checkpoints")
                try:
                    return save(*args, **kwargs)
                finally:
                    self.clock.end("checkpoints")
                    if validating:
                        self.clock.begin("validation")

            trainer.save_checkpoint = timed_save

        def on_sanity_check_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.clock.begin("sanity check")

        def on_sanity_check_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.clock.end("sanity check")

        def on_validation_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            if not trainer.sanity_checking:
                self.clock.begin("validation")

        def on_validation_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.clock.end("validation")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.samples += len(batch[1])
            self.steps += 1

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
            if not trainer.sanity_checking:
                self.samples += len(batch[1])

        def on_fit_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            Path(self.out_file).write_text(json.dumps(self.clock.result(self.samples, self.steps)))
except ImportError:  # pragma: no cover - lightning is a dependency
    pass


# ----------------------------------------------------------------------------- the plain loop
def plain_worker(epochs: int, batch_size: int, out_dir: Path, result_file: Path) -> None:
    """The plain PyTorch loop (runs in its own process; imports timed from the process start)."""
    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(42)
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    cfg = timm.data.resolve_model_data_config(model)
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    images = (images - mean) / std
    labels = torch.from_numpy(digits.target.astype(np.int64))
    idx = np.arange(len(labels))
    rest, _test = train_test_split(idx, test_size=0.15, stratify=digits.target, random_state=42)
    train_idx, val_idx = train_test_split(rest, test_size=0.15 / 0.85, stratify=digits.target[rest], random_state=42)
    train = DataLoader(TensorDataset(images[train_idx].contiguous(), labels[train_idx]), batch_size=batch_size,
                       shuffle=True, generator=torch.Generator().manual_seed(42))
    val = DataLoader(TensorDataset(images[val_idx].contiguous(), labels[val_idx]), batch_size=batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "metrics.csv", "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["epoch", "train_loss", "val_loss", "val_acc", "lr"])

    def evaluate(max_batches: int | None = None) -> tuple[float, float, int]:
        model.eval()
        correct, loss_sum, n = 0, 0.0, 0
        with torch.no_grad():
            for i, (x, y) in enumerate(val):
                if max_batches is not None and i >= max_batches:
                    break
                logits = model(x)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
                n += len(y)
        return correct / n, loss_sum / n, n

    clock = Clock()
    # the same sanity check as Lightning's default (num_sanity_val_steps=2): two validation batches
    # before the first epoch, so a broken validation step fails before an epoch of training
    clock.begin("sanity check")
    evaluate(max_batches=2)
    clock.end("sanity check")
    best, bad_epochs, samples, steps = -1.0, 0, 0, 0
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            samples += len(y)
            steps += 1
        lr = opt.param_groups[0]["lr"]
        sched.step()
        clock.begin("validation")
        acc, val_loss, n = evaluate()
        samples += n
        clock.end("validation")
        clock.begin("checkpoints")
        state = {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "best": max(best, acc)}
        if acc > best:
            torch.save(state, ckpt_dir / "best.ckpt")
        torch.save(state, ckpt_dir / "last.ckpt")
        clock.end("checkpoints")
        if acc > best:
            best, bad_epochs = acc, 0
        else:
            bad_epochs += 1
        writer.writerow([epoch, total / len(train), val_loss, acc, lr])
        log.flush()
        print(f"epoch {epoch}: train/loss {total / len(train):.3f} val/acc {acc:.3f}", flush=True)
        if bad_epochs >= 5:
            break
    result = clock.result(samples, steps)
    log.close()
    result_file.write_text(json.dumps(result))


# ----------------------------------------------------------------------------- the measurements
SPANS = ("sanity check", "validation", "checkpoints")


def _timed(cmd: list[str], result: Path, env: dict[str, str]) -> dict:
    t_launch = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    t_exit = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(result.read_text())
    train = data["fit_end"] - data["fit_start"]
    spans = {k: data["spans"].get(k, [0.0, 0.0]) for k in SPANS}
    return {
        "startup": data["fit_start"] - t_launch,
        "train": train,
        "train_cpu": data["fit_cpu"],
        "train_sys": data["fit_sys"],
        "faults": data["fit_faults"],
        "teardown": t_exit - data["fit_end"],
        "total": t_exit - t_launch,
        "samples": data["samples"],
        "steps": data["steps"],
        **{k: v[0] for k, v in spans.items()},
        **{f"{k} cpu": v[1] for k, v in spans.items()},
        "loop": train - sum(v[0] for v in spans.values()),
        "loop cpu": data["fit_cpu"] - sum(v[1] for v in spans.values()),
    }


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_runner(epochs: int, out: Path, threads: int | None, overrides: list[str] = ()) -> dict:
    result = out / "runner.json"
    cmd = [
        sys.executable, "run.py", f"trainer.max_epochs={epochs}", "test=false",
        "+callbacks.bench_timer._target_=scripts.bench_runner.FitTimer",
        f"+callbacks.bench_timer.out_file={result}", f"hydra.run.dir={out / 'run'}", *overrides,
    ]
    return _timed(cmd, result, {**_env(threads), "RUNNER_OUTPUT_DIR": str(out)})


def run_plain(epochs: int, out: Path, threads: int | None) -> dict:
    result = out / "plain.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plain-worker", "--epochs", str(epochs),
           "--out", str(out / "plain")]
    return _timed(cmd, result, _env(threads))


def help_seconds(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each side; medians are printed")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per run (each with validation)")
    parser.add_argument("--help-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in both processes (OMP_NUM_THREADS); 1 on a machine shared with other "
                             "jobs, where the CPU-time ratio is then the steadier figure")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra run.py override (repeatable), to measure a variant of the defaults, "
                             "e.g. --override 'trainer.plugins=[]'")
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        args.out.mkdir(parents=True, exist_ok=True)
        plain_worker(args.epochs, 64, args.out, args.out.parent / "plain.json")
        return
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be >= 1")

    print(f"{args.repeats} repeats x (plain loop, python run.py{''.join(' ' + o for o in args.override)}, the same with "
          f"keep_freed_memory=false), {args.epochs} epochs "
          f"each, threads: {args.threads or 'torch default'}", flush=True)
    # "glibc": run.py with glibc's malloc defaults (keep_freed_memory=false), to show what the
    # default keep_freed_memory=true gives and what Lightning's loop costs on its own
    sides = ("plain", "runner", "glibc")
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = sides if i % 2 == 0 else sides[::-1]  # alternate against drift
            for side in order:
                out = Path(tmp) / f"{side}_{i}"
                out.mkdir()
                if side == "plain":
                    runs[side].append(run_plain(args.epochs, out, args.threads))
                elif side == "runner":
                    runs[side].append(run_runner(args.epochs, out, args.threads, args.override))
                else:
                    runs[side].append(run_runner(args.epochs, out, args.threads,
                                                 [*args.override, "keep_freed_memory=false"]))
                r = runs[side][-1]
                print(f"  repeat {i + 1} {side:6s}: start-up {r['startup']:6.2f} s  training {r['train']:6.2f} s  "
                      f"({r['samples'] / r['train']:7.1f} samples/s, CPU {r['train_cpu']:6.2f} s, of it system "
                      f"{r['train_sys']:5.2f} s, {r['faults'] / 1000:6.0f}k page faults)  "
                      f"total {r['total']:6.2f} s", flush=True)

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def throughput(side: str) -> float:
        return statistics.median(r["samples"] / r["train"] for r in runs[side])

    def paired(side: str, key: str = "train") -> list[float]:
        # each repeat runs the sides back to back: the ratio within a repeat cancels the machine's drift
        return [r["samples"] / r[key] / (p["samples"] / p[key]) for r, p in zip(runs[side], runs["plain"])]

    ratio = statistics.median(paired("runner"))
    names = {"plain": "plain PyTorch loop", "runner": "python run.py", "glibc": "  keep_freed_memory=false"}
    print(f"\nmedians of {args.repeats} runs, {args.epochs} epochs each (training + validation + checkpoints):")
    print(f"{'':28s}{'start-up':>10s}{'training':>10s}{'teardown':>10s}{'total':>10s}{'samples/s':>11s}"
          f"{'system s':>10s}{'faults':>9s}")
    for side in sides:
        print(f"{names[side]:28s}{med(side, 'startup'):9.2f}s{med(side, 'train'):9.2f}s{med(side, 'teardown'):9.2f}s"
              f"{med(side, 'total'):9.2f}s{throughput(side):11.1f}{med(side, 'train_sys'):9.2f}s"
              f"{med(side, 'faults') / 1000:8.0f}k")
    print("  (system s, faults: kernel time and page faults during the fit. With glibc's defaults a process hands the\n"
          "   memory a step frees back to the OS and faults it in again, zeroed, the next step: the plain loop does, and\n"
          "   so does run.py with keep_freed_memory=false; run.py's default keeps it, see runner/allocator.py)")

    # where the training time goes, both sides split the same way
    plain_fit = med("plain", "train")
    print(f"\nwhere the training time goes (medians, wall s / CPU s; the difference as a share of the plain fit):")
    print(f"{'':34s}{'plain loop':>18s}{'python run.py':>18s}{'difference':>12s}")
    rows = [("sanity check (2 val batches)", "sanity check"), ("validation passes", "validation"),
            ("checkpoint saves (best + last)", "checkpoints"), ("training steps + the rest", "loop")]
    for label, key in rows:
        p_w, r_w = med("plain", key), med("runner", key)
        print(f"  {label:32s}{p_w:9.2f}/{med('plain', key + ' cpu'):6.2f}s{r_w:9.2f}/{med('runner', key + ' cpu'):6.2f}s"
              f"{(r_w - p_w) / plain_fit * 100:+11.1f}%")
    steps = med("runner", "steps")
    for side, what in (("runner", "run.py"), ("glibc", "run.py keep_freed_memory=false")):
        per_step = (med(side, "loop") - med("plain", "loop")) / max(steps, 1) * 1000
        print(f"  per training step: {per_step:+.1f} ms of {what} over the plain loop ({int(steps)} steps)")
    print("  (the second: Lightning's loop and hooks, torchmetrics updates and self.log, the progress bar, LR monitor\n"
          "   and early-stopping bookkeeping; by profile ~1 ms per self.log in Lightning's result collection, the rest\n"
          "   within the noise. The first also has the page faults keep_freed_memory saves, ~4-6 us each)")

    paired_cpu = paired("runner", "train_cpu")
    print(f"\nCPU-time throughput ratio run.py / plain: {statistics.median(paired_cpu):.3f} median of the per-repeat "
          f"ratios ({', '.join(f'{x:.2f}' for x in paired_cpu)})  (steadier on a shared machine; with --threads 1 "
          "it counts the work done)")
    glibc = paired("glibc")
    print(f"where run.py's speed comes from: with glibc's malloc defaults, like the plain loop "
          f"(keep_freed_memory=false), the throughput ratio is {statistics.median(glibc):.3f} "
          f"({', '.join(f'{x:.2f}' for x in glibc)}): Lightning's loop, hooks, logging and progress bar against the "
          f"plain loop; keep_freed_memory=true gives the rest")
    print(f"end-to-end wall time ratio plain / run.py: {med('plain', 'total') / med('runner', 'total'):.3f}")
    help_s = help_seconds(args.help_repeats)
    print(f"python run.py --help: {help_s:.3f} s median of {args.help_repeats}   (target <= 1.0 s)")
    print(f"  (ratio of the median throughputs: {throughput('runner') / throughput('plain'):.3f})")
    print(f"training throughput ratio run.py / plain: {ratio:.3f} median of the per-repeat wall-clock ratios "
          f"({', '.join(f'{x:.2f}' for x in paired('runner'))})")
    print(f"target >= 0.95: {'PASS' if ratio >= 0.95 else 'FAIL'}")


if __name__ == "__main__":
    main()
