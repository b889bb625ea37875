"""End-to-end benchmark of ``python run.py`` training against a plain PyTorch loop (ratios; machines are noisy).

Both sides run as fresh processes, alternately, ``--repeats`` times; medians are printed.

- ``python run.py`` with the default experiment as users get it (digits, timm resnet18, batch 64,
  AdamW + cosine, ModelCheckpoint best+last, EarlyStopping, RichProgressBar, LearningRateMonitor,
  csv logger, the sanity check), ``trainer.max_epochs=--epochs``, ``test=false``. A timing callback
  records when ``fit`` starts and ends.
- A plain PyTorch loop, independent of this project's code: the same timm model, the same digits data
  prepared the same way (8x8 scans resized to 32 px, 3 channels, timm's mean/std, 70/15/15 stratified
  split), the same batch size, optimizer and schedule; each epoch a training pass, a validation pass,
  a checkpoint (last, and best when it improves), the early-stopping bookkeeping, a progress line and a
  CSV row.

Reported separately: start-up (process start -> fit start: imports, config, data, model)
and training (fit start -> fit end: for run.py its sanity check, all epochs with their validation
passes and checkpoints). The throughput ratio is
run.py's samples/s over the plain loop's in the same repeat (the two run back to back, so the
machine's drift cancels), median over repeats (target >= 0.95). Also the wall
time of ``python run.py --help`` (target <= 1.0 s).

Usage: python scripts/bench_runner.py [--repeats 5] [--epochs 3] [--help-repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:  # the timing callback run.py instantiates (+callbacks.bench_timer._target_=scripts.bench_runner.FitTimer)
    import lightning.pytorch as pl

    class FitTimer(pl.Callback):
        """Writes when fit started/ended and how many samples were processed to ``out_file``."""

        def __init__(self, out_file: str) -> None:
            self.out_file = out_file
            self.t_start = 0.0
            self.samples = 0

        def on_fit_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.t_start = time.time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.samples += len(batch[1])

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
            if not trainer.sanity_checking:
                self.samples += len(batch[1])

        def on_fit_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            Path(self.out_file).write_text(json.dumps(
                {"fit_start": self.t_start, "fit_end": time.time(), "samples": self.samples,
                 "epochs": trainer.current_epoch}
            ))
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

    fit_start = time.time()
    best, bad_epochs, samples = -1.0, 0, 0
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
        lr = opt.param_groups[0]["lr"]
        sched.step()
        model.eval()
        correct, val_loss, n = 0, 0.0, 0
        with torch.no_grad():
            for x, y in val:
                logits = model(x)
                val_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
                n += len(y)
                samples += len(y)
        acc = correct / n
        state = {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "best": max(best, acc)}
        torch.save(state, ckpt_dir / "last.ckpt")
        if acc > best:
            best, bad_epochs = acc, 0
            torch.save(state, ckpt_dir / "best.ckpt")
        else:
            bad_epochs += 1
        writer.writerow([epoch, total / len(train), val_loss / n, acc, lr])
        log.flush()
        print(f"epoch {epoch}: train/loss {total / len(train):.3f} val/acc {acc:.3f}", flush=True)
        if bad_epochs >= 5:
            break
    fit_end = time.time()
    log.close()
    result_file.write_text(json.dumps({"fit_start": fit_start, "fit_end": fit_end, "samples": samples,
                                       "epochs": epochs}))


# ----------------------------------------------------------------------------- the measurements
def _timed(cmd: list[str], result: Path, env: dict[str, str]) -> dict[str, float]:
    t_launch = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    t_exit = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(result.read_text())
    return {
        "startup": data["fit_start"] - t_launch,
        "train": data["fit_end"] - data["fit_start"],
        "teardown": t_exit - data["fit_end"],
        "total": t_exit - t_launch,
        "samples": data["samples"],
    }


def run_runner(epochs: int, out: Path) -> dict[str, float]:
    result = out / "runner.json"
    cmd = [
        sys.executable, "run.py", f"trainer.max_epochs={epochs}", "test=false",
        "+callbacks.bench_timer._target_=scripts.bench_runner.FitTimer",
        f"+callbacks.bench_timer.out_file={result}", f"hydra.run.dir={out / 'run'}",
    ]
    return _timed(cmd, result, {**os.environ, "RUNNER_OUTPUT_DIR": str(out)})


def run_plain(epochs: int, out: Path) -> dict[str, float]:
    result = out / "plain.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plain-worker", "--epochs", str(epochs),
           "--out", str(out / "plain")]
    return _timed(cmd, result, dict(os.environ))


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
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        args.out.mkdir(parents=True, exist_ok=True)
        plain_worker(args.epochs, 64, args.out, args.out.parent / "plain.json")
        return
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be >= 1")

    runs: dict[str, list[dict[str, float]]] = {"plain": [], "runner": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = ("plain", "runner") if i % 2 == 0 else ("runner", "plain")  # alternate against drift
            for side in order:
                out = Path(tmp) / f"{side}_{i}"
                out.mkdir()
                runs[side].append((run_plain if side == "plain" else run_runner)(args.epochs, out))
                r = runs[side][-1]
                print(f"  repeat {i + 1} {side:6s}: start-up {r['startup']:6.2f} s  training {r['train']:6.2f} s  "
                      f"({r['samples'] / r['train']:7.1f} samples/s)  total {r['total']:6.2f} s", flush=True)

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def throughput(side: str) -> float:
        return statistics.median(r["samples"] / r["train"] for r in runs[side])

    # each repeat runs both sides back to back: the ratio within a repeat cancels the machine's drift
    paired = [r["samples"] / r["train"] / (p["samples"] / p["train"]) for r, p in zip(runs["runner"], runs["plain"])]
    ratio = statistics.median(paired)
    print(f"\nmedians of {args.repeats} runs, {args.epochs} epochs each (training + validation + checkpoints):")
    print(f"{'':22s}{'start-up':>10s}{'training':>10s}{'teardown':>10s}{'total':>10s}{'samples/s':>11s}")
    for side, name in (("plain", "plain PyTorch loop"), ("runner", "python run.py")):
        print(f"{name:22s}{med(side, 'startup'):9.2f}s{med(side, 'train'):9.2f}s{med(side, 'teardown'):9.2f}s"
              f"{med(side, 'total'):9.2f}s{throughput(side):11.1f}")
    print(f"training throughput ratio run.py / plain: {ratio:.3f} median of the per-repeat ratios "
          f"({', '.join(f'{x:.2f}' for x in paired)})   (target >= 0.95)")
    print(f"  (ratio of the median throughputs: {throughput('runner') / throughput('plain'):.3f})")
    print(f"end-to-end wall time ratio plain / run.py: {med('plain', 'total') / med('runner', 'total'):.3f}")
    help_s = help_seconds(args.help_repeats)
    print(f"python run.py --help: {help_s:.3f} s median of {args.help_repeats}   (target <= 1.0 s)")


if __name__ == "__main__":
    main()
