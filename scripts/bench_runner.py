"""Benchmark of the runner, measured in one run (ratios, since machines are shared and noisy).

1. Training steps/s through ``python run.py`` (default config: digits, resnet18, batch 64, with
   its checkpointing, early stopping and progress bar) against a plain hand-written PyTorch loop
   on the same model, data, optimizer and batch size. Target ratio >= 0.90.
2. Wall time of ``python run.py --help``. Target <= 1.0 s.

Usage: python scripts/bench_runner.py [--epochs 3] [--help-repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402


class StepTimer(pl.Callback):
    """Times training steps after the first epoch (warm-up); writes steps/s to ``out_file``."""

    def __init__(self, out_file: str, warmup_epochs: int = 1) -> None:
        self.out_file = out_file
        self.warmup_epochs = warmup_epochs
        self.elapsed = 0.0
        self.steps = 0
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.current_epoch >= self.warmup_epochs:
            self.elapsed += time.perf_counter() - self._t0
            self.steps += 1

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        Path(self.out_file).write_text(json.dumps({"steps": self.steps, "seconds": self.elapsed}))


def runner_steps_per_second(epochs: int, out: Path) -> float:
    result = out / "steps.json"
    cmd = [
        sys.executable, "run.py", f"trainer.max_epochs={epochs}", "test=false", "print_config=false",
        "callbacks.early_stopping=null",  # measure all epochs
        "+callbacks.step_timer._target_=scripts.bench_runner.StepTimer",
        f"+callbacks.step_timer.out_file={result}", f"hydra.run.dir={out / 'run'}",
    ]
    env = {**os.environ, "RUNNER_OUTPUT_DIR": str(out)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    data = json.loads(result.read_text())
    return data["steps"] / data["seconds"]


def plain_loop_steps_per_second(epochs: int) -> float:
    """The same model, data, optimizer and batch size in a hand-written loop (timed likewise)."""
    import timm
    import torch
    import torch.nn.functional as F

    from runner.data import DigitsDataModule

    torch.manual_seed(42)
    dm = DigitsDataModule(batch_size=64, image_size=32, seed=42)
    dm.setup("fit")
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.01)
    model.train()
    elapsed, steps = 0.0, 0
    for epoch in range(epochs):
        for x, y in dm.train_dataloader():
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if epoch >= 1:
                elapsed += time.perf_counter() - t0
                steps += 1
    return steps / elapsed


def help_seconds(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    parser.add_argument("--help-repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        plain = plain_loop_steps_per_second(args.epochs)
        runner = runner_steps_per_second(args.epochs, Path(tmp))
        plain_again = plain_loop_steps_per_second(args.epochs)  # bracket the runner against drift
    baseline = (plain + plain_again) / 2
    help_s = help_seconds(args.help_repeats)
    print(f"plain PyTorch loop:   {baseline:8.2f} steps/s (runs: {plain:.2f}, {plain_again:.2f})")
    print(f"python run.py:        {runner:8.2f} steps/s")
    print(f"ratio run.py / plain: {runner / baseline:8.3f}   (target >= 0.90)")
    print(f"python run.py --help: {help_s:8.3f} s median of {args.help_repeats}   (target <= 1.0 s)")


if __name__ == "__main__":
    main()
