"""Training throughput of ``python run.py`` against a loop built from timm's own pieces, as timm's train.py builds it.

The script writes an image folder of JPEG files (``--sizes``, e.g. 64 and 224 px), then measures, in
alternating rounds, train images per second of

- ``run``: ``python run.py data=imagefolder ...`` (the project: Lightning, the datamodule, the recipe
  keys), timed inside the run by :class:`EpochTimer` (a callback given on the command line);
- ``timm``: :func:`timm_loop`, written from timm's library pieces the way timm's ``train.py`` puts
  them together: ``create_dataset`` + ``create_transform`` + a ``DataLoader``, ``Mixup`` +
  ``SoftTargetCrossEntropy`` (else ``LabelSmoothingCrossEntropy``), ``create_optimizer_v2``,
  ``CosineLRScheduler`` stepped with ``step_update``, ``ModelEmaV3``, ``loss.item()`` per step.

Both sides: the same folder, model, batch size, optimizer (AdamW, one parameter group), recipe
(timm augmentation with RandAugment, label smoothing, warmup + cosine per step; ``+mixup_ema``
adds Mixup/CutMix and the weight EMA) and loader workers; each a fresh process per round. An
epoch is timed from its start to the end of its last optimizer step, data loading included; the
first epoch of each process is a warm-up and not counted; run.py validates one batch after each
epoch, outside the timed span, from a validation folder of one batch (a larger one would leave its
kept workers decoding prefetched batches during the next timed epoch); the timm loop does not validate. Prints the median images
per second of each side and the ratio run/timm per (size, variant); the goal is >= 0.95.

    python scripts/bench_timm_loop.py --sizes 64 --rounds 3 --epochs 3        # the smallest setting
    python scripts/bench_timm_loop.py --sizes 64 224 --rounds 5
    python scripts/bench_timm_loop.py --sizes 224 --model resnet50 --device cuda --precision bf16-mixed --channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

ROOT = Path(__file__).resolve().parents[1]

#: the recipe both sides train with
LR, WEIGHT_DECAY, SMOOTHING, WARMUP_STEPS = 1e-3, 0.05, 0.1, 2
AUTO_AUGMENT, RE_PROB = "rand-m9-mstd0.5-inc1", 0.25
MIXUP = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}
EMA_DECAY = 0.999


class EpochTimer(pl.Callback):
    """Seconds of each training epoch, from its start to the end of its last batch, appended to ``out`` (JSON lines)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx + 1 == trainer.num_training_batches:
            _sync(pl_module.device.type)
            seconds = time.perf_counter() - self.start
            with open(self.out, "a") as f:
                f.write(json.dumps({"epoch": trainer.current_epoch, "seconds": seconds,
                                    "images": trainer.num_training_batches * int(batch[0].shape[0])}) + "\n")


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def write_folder(root: Path, size: int, classes: int, per_class: int, split: str = "train") -> Path:
    """``root/<split>/<class>/<i>.jpg``: seeded noise around a colour per class, ``size`` x ``size`` JPEGs."""
    import numpy as np
    from PIL import Image

    folder = root / split
    if folder.is_dir():
        return folder
    rng = np.random.default_rng(0 if split == "train" else 1)
    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 60, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"class{c}" / f"{i}.jpg", quality=90)
    return folder


def run_side(args: argparse.Namespace, train: Path, size: int, variant: bool, out: Path) -> None:
    """One ``python run.py`` process of ``args.epochs`` epochs; epoch times go to ``out``.

    Its validation folder (``val`` beside ``train``) holds one batch: the one batch validated after each
    epoch leaves the validation workers nothing prefetched to decode during the next timed epoch.
    """
    val = train.parent / "val"
    overrides = [
        "data=imagefolder", f"data.train_dir={train}", f"data.val_dir={val}", f"data.image_size={size}",
        f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}", "data.augment=timm",
        f"data.auto_augment={AUTO_AUGMENT}", f"data.re_prob={RE_PROB}", f"data.pin_memory={args.device == 'cuda'}",
        f"model.backbone={args.model}", f"model.label_smoothing={SMOOTHING}", f"model.channels_last={args.channels_last}",
        f"model.optimizer.lr={LR}", f"model.optimizer.weight_decay={WEIGHT_DECAY}",
        "model.scheduler._target_=runner.models.lr_schedule.WarmupCosineLR", "model.scheduler_interval=step",
        f"+model.scheduler.warmup_steps={WARMUP_STEPS}",
        f"trainer.max_epochs={args.epochs}", "+trainer.limit_val_batches=1", "+trainer.num_sanity_val_steps=0",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.devices=1",
        f"trainer.precision={args.precision}", "test=false", "report=false", "print_config=false",
        # the standard callbacks (checkpoints, early stopping, progress bar, LR monitor): the default
        # experiment's explanation and cartography callbacks are no part of timm's loop
        "callbacks=default",
        "+callbacks.bench_timer._target_=bench_timm_loop.EpochTimer", f"+callbacks.bench_timer.out={out}",
        f"hydra.run.dir={out.parent / ('run_' + out.stem)}",
    ]
    overrides += list(args.run_args)
    if variant:
        overrides += [f"+model.mixup.{k}={v}" for k, v in MIXUP.items()]
        overrides += ["+callbacks.ema._target_=callbacks.EMAWeights", f"+callbacks.ema.decay={EMA_DECAY}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])}
    subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timm_side(args: argparse.Namespace, train: Path, size: int, variant: bool, out: Path) -> None:
    """One process running :func:`timm_loop` (``--timm-worker``); epoch times go to ``out``."""
    cmd = [sys.executable, __file__, "--timm-worker", str(train), str(size), str(int(variant)), str(out),
           "--model", args.model, "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--epochs", str(args.epochs), "--device", args.device, "--precision", args.precision]
    cmd += ["--channels-last"] if args.channels_last else []
    subprocess.run(cmd, check=True, cwd=ROOT)


def timm_loop(args: argparse.Namespace, train: Path, size: int, variant: bool, out: Path) -> None:
    """timm's training loop from its library pieces (timm/train.py's assembly, one process, no validation)."""
    import timm
    import torch
    from timm.data import Mixup, create_dataset, create_transform, resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3

    sys.path.insert(0, str(ROOT))
    # the same workaround as run.py's: timm 1.0's posterize at magnitude 10 asks Pillow >= 13 for 0 bits
    from runner.data.transforms import guard_posterize

    torch.manual_seed(0)
    device = torch.device(args.device)
    dataset = create_dataset("", root=str(train), split="train", is_training=True)
    model = timm.create_model(args.model, num_classes=len(dataset.reader.class_to_idx))
    config = resolve_data_config({"input_size": (3, size, size)}, model=model)
    dataset.transform = guard_posterize(create_transform(
        (3, size, size), is_training=True, auto_augment=AUTO_AUGMENT, re_prob=RE_PROB,
        interpolation=config["interpolation"], mean=config["mean"], std=config["std"],
    ))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
        pin_memory=args.device == "cuda", persistent_workers=args.workers > 0,
    )
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(model, "adamw", lr=LR, weight_decay=WEIGHT_DECAY, filter_bias_and_bn=False)
    steps = args.epochs * len(loader)
    scheduler = CosineLRScheduler(optimizer, t_initial=steps, warmup_t=WARMUP_STEPS, warmup_lr_init=1e-6, t_in_epochs=False)
    mixup = Mixup(**MIXUP, label_smoothing=SMOOTHING, num_classes=model.num_classes) if variant else None
    ema = ModelEmaV3(model, decay=EMA_DECAY) if variant else None
    loss_fn = SoftTargetCrossEntropy() if variant else LabelSmoothingCrossEntropy(SMOOTHING)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    updates = 0
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        seen = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                x, y = mixup(x, y)
            with autocast:
                loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            if ema is not None:
                ema.update(model, step=updates)
            scheduler.step_update(num_updates=updates)
            loss.item()  # timm's train.py: losses_m.update(loss.item(), ...) every step
            seen += x.shape[0]
        _sync(device.type)
        with open(out, "a") as f:
            f.write(json.dumps({"epoch": epoch, "seconds": time.perf_counter() - start, "images": seen}) + "\n")


def images_per_second(out: Path) -> list[float]:
    """Images per second of each epoch but the first (the warm-up) in a JSON-lines file."""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return [r["images"] / r["seconds"] for r in rows if r["epoch"] > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=32, help="training images per class (a multiple of batch/classes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per process; the first is a warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--variants", nargs="+", default=["plain", "mixup_ema"], choices=["plain", "mixup_ema"])
    parser.add_argument("--run-args", nargs="*", default=[], metavar="OVERRIDE",
                        help="extra overrides for the run.py side only (e.g. callbacks.rich_progress_bar=null), to find what costs")
    parser.add_argument("--workdir", default=None, help="where the images and timings go (default: a temporary folder)")
    parser.add_argument("--timm-worker", nargs=4, metavar=("TRAIN", "SIZE", "VARIANT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timm_worker:
        train, size, variant, out = args.timm_worker
        timm_loop(args, Path(train), int(size), bool(int(variant)), Path(out))
        return
    if (args.classes * args.per_class) % args.batch_size:
        parser.error("--classes x --per-class must be a multiple of --batch-size (both sides then see every image)")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_timm_loop_"))
    try:
        bench(args, work)
    finally:
        if not args.workdir:  # its own temporary folder (GBs of checkpoints and images): never left behind
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path) -> None:
    print(f"model {args.model}, batch {args.batch_size}, {args.classes * args.per_class} JPEGs, workers {args.workers}, "
          f"{args.epochs} epochs/process (first not counted), {args.rounds} alternating rounds, device {args.device}, "
          f"precision {args.precision}, channels_last {args.channels_last}; in {work}")
    for size in args.sizes:
        train = write_folder(work / f"images_{size}", size, args.classes, args.per_class)
        write_folder(work / f"images_{size}", size, args.classes, max(1, args.batch_size // args.classes), "val")
        for name in args.variants:
            variant = name == "mixup_ema"
            rates: dict[str, list[float]] = {"run": [], "timm": []}
            for r in range(args.rounds):
                order = [("run", run_side), ("timm", timm_side)]
                for side, fn in order if r % 2 == 0 else order[::-1]:
                    out = work / f"{side}_{size}_{name}_{r}.jsonl"
                    try:
                        fn(args, train, size, variant, out)
                    except subprocess.CalledProcessError as err:
                        sys.exit(f"{side} side failed: {(err.stderr or b'').decode()[-3000:]}")
                    rates[side] += images_per_second(out)
            run_ips, timm_ips = statistics.median(rates["run"]), statistics.median(rates["timm"])
            print(f"{size:>4} px  {name:<10} run.py {run_ips:8.1f} img/s   timm loop {timm_ips:8.1f} img/s   "
                  f"ratio {run_ips / timm_ips:.3f}x  (goal >= 0.95)")


if __name__ == "__main__":
    main()
