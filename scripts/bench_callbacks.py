"""What the training callbacks cost, measured in one run and printed as ratios.

1. Wall-clock training throughput of the same seeded fit (timm resnet18 on the digits data,
   ``--steps`` optimizer steps, 20 per epoch) without callbacks, with ``FeatureMonitorCallback``
   as shipped (``layer_names=auto``: 3 layers, ``num_batches=10`` of every epoch, merged through
   Lightning's metric path), with ``GramMatrixCallback`` every 100 steps, with
   ``InterpretationCallback`` as conf/callbacks/interpretation.yaml ships it (GradCAM of the
   datamodule's 8 sample images at the end of epochs 0, 5, 10, ... and at the end of training,
   scored with the default metrics; a 100-step fit explains twice, at epoch 0 and at the end, as
   the default 160-step experiment explains three times) and with ``CartographyCallback`` as
   conf/callbacks/cartography.yaml ships it (every training step's logits recorded, the CSV and
   the image of the 8 hardest samples with their GradCAM at the end). The callbacks are
   ``bench_fits.CALLBACKS``, their targets ``TARGETS`` below. Each of ``--rounds`` (>= 9) rounds
   runs the fits of ``--kinds`` (default all six: baseline, FeatureMonitor, Interpretation,
   control, GramMatrix, Cartography; baseline and control always) each in a fresh
   process of its own, **in lockstep**: the fits take turns a training step at a time (a fit's turn
   runs from the start of one of its steps to the start of its next: data fetch, every hook and
   callback, epoch ends and logging included, the last one until the end of training, every
   callback's ``on_train_end`` included; the others wait on a semaphore), the rotation
   reversed every other round. A fit's wall time is the sum of its turns. The overhead is the
   median over rounds of (wall time with / the mean wall time of the round's two fits without) - 1,
   judged against the targets (FeatureMonitor <= 2%, GramMatrix <= 1%, Interpretation <= 3%,
   Cartography <= 1%), with a bootstrap 95%
   interval. The control fit, the baseline again in every round (an A/A test), shows how far two
   identical fits differ: an overhead within the control's is not resolvable.

   Why lockstep: this (shared, virtual) machine runs fast and slow for spells of tens of seconds
   (a step taking 170 ms for a minute, then 245 ms), so whole fits run one after another differed
   by 5-12% even when identical (``--sequential``, the design before: 9-15 rounds gave verdicts that
   flipped between runs); fits whose steps alternate meet every spell alike, and identical fits
   then agree within ~1% (34.12 / 34.43 s in one round; control / baseline +0.45% in the median of
   26 rounds, interval -0.50% to +0.95%; the old design's control interval on a 16-core Xeon,
   26 rounds: -5.9% to +3.9%). Each fit has one
   torch thread by default (``--threads``): a fit's pool of two or more threads idled and woke up
   again at each turn, and its steps ran ~1.7x slower than alone; a finished fit's process waits,
   without working, until the round's last fit is done (its exit would otherwise run beside the
   others' last steps).
   Beside the verdict: the same ratio of the fits' CPU time, and the time spent inside each
   callback's code (every Lightning hook its class overrides and FeatureMonitor's forward hooks,
   timed directly; not ``setup``, which runs before training).
   On a multi-core machine ``--shards N`` runs N such rounds at once, each shard pinned to
   ``--threads`` cores of its own (one per physical core first), and judges the pooled rounds.
   Every process keeps freed memory as ``run.py`` does by default (``keep_freed_memory``): with
   glibc's malloc defaults (``--glibc-malloc``) each fit took 100k-600k page faults, as many as its
   heap's history gave it.

   What the callbacks cost, by a profile of whole fits (cProfile, 1 thread, 32 px, 100 steps):
   FeatureMonitor's statistics, forward hooks and hooks ~0.7% of the fit; before, it logged its 12 values
   once per epoch, it logged them on every collected batch, and each ``pl_module.log`` call costs
   ~1 ms in Lightning's result collection (``_ResultMetric.to``): 120 calls per epoch were the
   larger part of its cost. GramMatrix: ~23 ms per firing (statistics, drawing, PNG, CSV row),
   nothing between firings (no hooks, no syncs); its per-fit share is that over the fit's length.
   No per-fit fixed cost is left to amortise (matplotlib is imported with Lightning anyway, the
   font and colour table are cached), so a 100-step fit (5 digits epochs; the default experiment
   trains 160) is long enough; a 100-step fit fires GramMatrix once, as a 100-step run would.
2. One ``InterpretationCallback`` GradCAM call with 8 samples (predict, explain, overlay, grid,
   PNG) against one forward+backward of the same 8 images (train mode, weight gradients: what 8
   training samples cost), and against 8 single-image forward+backward passes. Target <= 1.5x.

Usage::

    python scripts/bench_callbacks.py                 # 9 rounds of all six fits, ~33 minutes on 1 CPU core
    python scripts/bench_callbacks.py --kinds interpretation cartography   # baseline, control and these two
    python scripts/bench_callbacks.py --shards 2 --rounds 8   # 16 rounds on 2 cores, ~22 minutes
    python scripts/bench_callbacks.py --quick         # 5 rounds, 3 repeats: a smoke run, not a verdict
    python scripts/bench_callbacks.py --shards 8 --rounds 4 --max-minutes 10   # 8+ idle cores: up to 32 rounds
    python scripts/bench_callbacks.py --sequential    # whole fits one after another, torch's threads
    python scripts/bench_callbacks.py --combine a.jsonl b.jsonl   # judge rounds saved with --rounds-file

Beside it: ``bench_fits.py`` (the seeded fits and their timers), ``bench_lockstep.py`` (the fits'
processes taking turns), ``bench_common.py`` (the bootstrap interval).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from bench_common import median_interval  # noqa: E402
from bench_fits import fit  # noqa: E402
from bench_lockstep import lockstep_round  # noqa: E402

from callbacks import InterpretationCallback  # noqa: E402
from runner.allocator import keep_freed_memory  # noqa: E402
from runner.data import DigitsDataModule  # noqa: E402
from runner.models.classifier import ImageClassifier  # noqa: E402

#: every kind of fit, in a round's order (a callback's fit between two without one, in the order or the rotation);
#: ``--kinds`` picks some of them, in this order; baseline and control are always among them
KINDS = ["baseline", "feature_monitor", "interpretation", "control", "gram_matrix", "cartography"]
#: each callback's target (the most wall-clock overhead it may add) and how the table names it: the one
#: place that says what is judged (the callbacks themselves: bench_fits.CALLBACKS)
TARGETS: dict[str, tuple[float, str]] = {
    "feature_monitor": (0.02, "FeatureMonitor, auto (3 layers), num_batches=10"),
    "gram_matrix": (0.01, "GramMatrix every 100 steps"),
    "interpretation": (0.03, "Interpretation, gradcam x8, epochs 0,5,.. + end, default metrics"),
    "cartography": (0.01, "Cartography, num_hardest=8 image at the end"),
}


def run_rounds(args: argparse.Namespace, root: Path, prefix: str = "") -> dict[str, list[tuple[float, float, float, int]]]:
    """``--rounds`` alternating rounds of the four fits; each finished round is printed and, with
    ``--rounds-file``, appended to it as one JSON line (a killed run keeps what it finished)."""
    # "control" is the baseline fit run a second time in each round (an A/A test): its "overhead" is the
    # size of the differences this machine makes between two identical fits, not a callback's cost.
    # Each callback's fit sits between two fits without a callback (in the order, or the rotation,
    # reversed every other round) and is judged against the mean of those two.
    if args.sequential:  # lockstep fits warm up in their own processes
        fit("baseline", 10, args.image_size, args.batch_size, root / "warmup")  # one-time costs out of the way
    settings = {"steps": args.steps, "image_size": args.image_size, "batch_size": args.batch_size,
                "threads": args.fit_threads or torch.get_num_threads(),
                "design": "sequential" if args.sequential else "lockstep", "kinds": args.kinds}
    kinds = args.kinds
    # per kind, one (wall s, s inside the callback, CPU s, page faults) per round
    results: dict[str, list[tuple[float, float, float, int]]] = {k: [] for k in kinds}
    last = 0.0  # seconds the last round took
    for r in range(args.rounds):
        if args.max_minutes and time.perf_counter() - args.started + last > args.max_minutes * 60:
            print(f"{prefix}  --max-minutes {args.max_minutes:g}: no time for another round, {r} done", flush=True)
            break
        round_start = time.perf_counter()
        order = kinds if r % 2 == 0 else kinds[::-1]  # alternate the order too: no kind always runs first
        if args.sequential:
            for kind in order:
                results[kind].append(fit(kind, args.steps, args.image_size, args.batch_size, root / f"round{r}"))
        else:
            one = lockstep_round(order, args, root / f"round{r}")
            for kind in order:
                results[kind].append(one[kind])
        line = "  ".join(f"{k} {results[k][-1][0]:6.2f}s (CPU {results[k][-1][2]:6.2f}s, {results[k][-1][3] // 1000}k faults)"
                         for k in kinds)
        print(f"{prefix}  round {r + 1:2d}: {line}", flush=True)
        last = time.perf_counter() - round_start
        record = json.dumps({**{k: results[k][-1] for k in kinds}, "settings": settings}) + "\n"
        for path in filter(None, (args.rounds_file, args.mirror_rounds_file)):
            with open(path, "a") as f:  # one short line, one write: appends from several shards do not mix
                f.write(record)
    return results


def read_rounds(paths: list[str]) -> dict[str, list[tuple[float, float, float, int]]]:
    """The rounds of ``--rounds-file`` files, pooled (each round carries its own baseline and control); the
    kinds every round has."""
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()]
    kinds = [k for k in KINDS if rows and all(k in row for row in rows)]
    return {k: [tuple(row[k]) for row in rows] for k in kinds}


def run_shards(args: argparse.Namespace, root: Path) -> dict[str, list[tuple[float, float, float, int]]]:
    """``--shards`` copies of the rounds at once, each its own process pinned to ``--threads`` cores of
    its own (on a multi-core machine: more rounds in the same time). Every round is still judged
    within itself (its fits ran on the same cores, taking turns or one after another); the shards
    share the memory bus and caches, a load every kind of fit meets alike."""
    cpus = physical_cores_first(sorted(os.sched_getaffinity(0)))
    threads = args.fit_threads or 2
    if args.shards * threads > len(cpus):
        raise SystemExit(f"--shards {args.shards} x --threads {threads} needs {args.shards * threads} cores; "
                         f"this process may use {len(cpus)}")
    procs = []
    for i in range(args.shards):
        mine = cpus[i * threads:(i + 1) * threads]
        rounds_file = root / f"shard{i}.jsonl"
        cmd = [sys.executable, __file__, "--skip-interpretation", "--rounds", str(args.rounds), "--threads", str(threads),
               "--kinds", *args.kinds, "--steps", str(args.steps), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size),
               "--rounds-file", str(rounds_file), *(["--mirror-rounds-file", args.rounds_file] if args.rounds_file else []),
               "--prefix", f"[shard {i}, cores {','.join(map(str, mine))}]",
               "--no-verdict"]
        if args.max_minutes:
            cmd += ["--max-minutes", str(max(args.max_minutes - (time.perf_counter() - args.started) / 60, 0.01))]
        if args.glibc_malloc:
            cmd.append("--glibc-malloc")
        if args.sequential:
            cmd.append("--sequential")
        # the shard's fits are pinned to its cores (lockstep: the fits' processes inherit the affinity)
        procs.append((subprocess.Popen(cmd, preexec_fn=functools.partial(os.sched_setaffinity, 0, mine)), rounds_file))
    for proc, _ in procs:
        proc.wait()
    if any(proc.returncode for proc, _ in procs):
        raise SystemExit(f"a shard failed: exit codes {[proc.returncode for proc, _ in procs]}")
    return read_rounds([str(rounds_file) for _, rounds_file in procs])


def physical_cores_first(cpus: list[int]) -> list[int]:
    """The CPUs, one per physical core first (hyper-thread siblings last), from Linux's topology files."""
    seen, first, rest = set(), [], []
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            core = ((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip())
        except OSError:
            core = ("?", str(cpu))
        (rest if core in seen else first).append(cpu)
        seen.add(core)
    return first + rest


def bench_throughput(args: argparse.Namespace, root: Path) -> list[bool]:
    if args.no_verdict:  # a shard of --shards: its rounds only
        run_rounds(args, root, args.prefix)
        return []
    if args.combine:  # the fits' settings as the files recorded them
        first = json.loads(Path(args.combine[0]).read_text().splitlines()[0]).get("settings", {})
        args.steps, args.image_size, args.batch_size = (first.get(k, getattr(args, k)) for k in
                                                         ("steps", "image_size", "batch_size"))
        where = (f"rounds read from {len(args.combine)} file(s), {first.get('threads', '?')} threads a fit, "
                 f"{first.get('design', 'sequential')} fits")
    elif args.shards > 1:
        where = f"{args.shards} shards in parallel, each pinned to {args.fit_threads or 2} core(s)"
    else:
        where = f"{args.fit_threads or torch.get_num_threads()} torch thread(s) a fit"
    if not args.combine:
        where += (", whole fits one after another" if args.sequential
                  else f", the {len(args.kinds)} fits taking turns a step at a time")
    print(f"\n== training throughput: resnet18, digits {args.image_size}px, batch {args.batch_size}, "
          f"{args.steps} steps per fit ({args.steps / 20:g} epochs of 20 steps; the default experiment trains "
          f"8 epochs = 160 steps), alternating rounds ({where}) ==", flush=True)
    if args.combine:
        results = read_rounds(args.combine)
        print(f"  rounds read from {', '.join(args.combine)}")
    elif args.shards > 1:
        results = run_shards(args, root)
    else:
        results = run_rounds(args, root, args.prefix)
    if len(results["baseline"]) < 9:
        print(f"  WARNING: {len(results['baseline'])} rounds: fewer than 9, not a verdict")
    return judge(results, args)


def judge(results: dict[str, list[tuple[float, float, float, int]]], args: argparse.Namespace) -> list[bool]:
    print(f"\n  {len(results['baseline'])} rounds")
    rng = random.Random(0)
    judged = [k for k in KINDS if k in TARGETS and k in results]
    targets = {k: TARGETS[k][0] for k in judged}
    labels = {k: TARGETS[k][1] for k in judged}
    width = max([48, *(len(label) for label in labels.values())])
    base = [s for s, _, _, _ in results["baseline"]]
    base_cpu = [c for _, _, c, _ in results["baseline"]]
    # the reference of each round: the mean of its two fits without a callback (baseline, control)
    ref = [(a + b[0]) / 2 for a, b in zip(base, results["control"])]
    ref_cpu = [(a + b[2]) / 2 for a, b in zip(base_cpu, results["control"])]
    ok = []
    print(f"\n  {'callback':{width}s} {'wall overhead':>13s} {'(ratio of medians)':>18s} {'CPU overhead':>12s} "
          f"{'in hooks':>9s} {'target':>7s}")
    verdicts, intervals = [], []
    for kind in judged:
        walls = [s for s, _, _, _ in results[kind]]
        cpus = [c for _, _, c, _ in results[kind]]
        overhead = statistics.median(w / b for w, b in zip(walls, ref)) - 1.0
        of_medians = statistics.median(walls) / statistics.median(ref) - 1.0
        cpu_overhead = statistics.median(c / b for c, b in zip(cpus, ref_cpu)) - 1.0
        share = statistics.median(i / s for s, i, _, _ in results[kind])
        inside = statistics.median(i for _, i, _, _ in results[kind])
        low, high = median_interval([w / b - 1.0 for w, b in zip(walls, ref)], rng)
        passed = overhead <= targets[kind]
        ok.append(passed)
        print(f"  {labels[kind]:{width}s} {overhead * 100:12.2f}% {of_medians * 100:17.2f}% {cpu_overhead * 100:11.2f}% "
              f"{share * 100:8.2f}% {targets[kind] * 100:6.0f}%  {'PASS' if passed else 'FAIL'}")
        intervals.append(f"  {labels[kind].split(',')[0]}: 95% interval of the wall overhead's median "
                         f"[{low * 100:+.2f}%, {high * 100:+.2f}%]; inside its hooks {inside:.2f} s a fit (median), "
                         f"the fit {statistics.median(walls):.1f} s")
        verdicts.append(f"{labels[kind].split(',')[0]} wall-clock overhead {overhead * 100:+.2f}% "
                        f"(target <= {targets[kind] * 100:.0f}%): {'PASS' if passed else 'FAIL'}")
    ctrl = [s for s, _, _, _ in results["control"]]
    ctrl_cpu = [c for _, _, c, _ in results["control"]]
    ctrl_wall = statistics.median(w / b for w, b in zip(ctrl, base)) - 1.0
    ctrl_cpu_oh = statistics.median(c / b for c, b in zip(ctrl_cpu, base_cpu)) - 1.0
    ctrl_low, ctrl_high = median_interval([w / b - 1.0 for w, b in zip(ctrl, base)], rng)
    intervals.append(f"  control: 95% interval of its median [{ctrl_low * 100:+.2f}%, {ctrl_high * 100:+.2f}%] "
                     "(bootstrap over rounds, 2000 resamples)")
    print(f"  {'control: the baseline fit again (A/A)':{width}s} {ctrl_wall * 100:12.2f}% "
          f"{(statistics.median(ctrl) / statistics.median(base) - 1) * 100:17.2f}% {ctrl_cpu_oh * 100:11.2f}%"
          "      -       -   (no callback: the machine's own difference between identical fits)")
    verdicts.append(f"control (the same fit twice, no callback): {ctrl_wall * 100:+.2f}% wall, "
                    f"{ctrl_cpu_oh * 100:+.2f}% CPU -- overheads within this are not resolvable here")
    print("\n".join(intervals))
    spread = (max(base) - min(base)) / statistics.median(base)
    print("  (wall overhead: median over rounds of with / without in the same round (the mean of its baseline and")
    print("   control fits), minus 1 -- the verdict; control: control / baseline, minus 1; CPU overhead: the same")
    print("   with the CPU time of the fits' turns (--sequential: of the process); in hooks: share of the training")
    print("   time spent inside the callback's hooks, its forward hooks included; the baseline's spread across")
    print(f"   rounds, {spread * 100:.1f}%, is the machine's speed from round to round: each round is judged alone)")
    reach = max(abs(ctrl_low), abs(ctrl_high))
    if reach > 0.01:
        print(f"  WARNING: the control's interval reaches {reach * 100:.1f}%: identical fits differ that much here, and")
        print("  overheads below that are not resolved: add rounds (--rounds, --shards on more cores)")
    args.verdicts.extend(verdicts)
    return ok


def bench_interpretation(args: argparse.Namespace, root: Path) -> bool:
    size = args.interp_image_size
    print(f"\n== one InterpretationCallback call: GradCAM, 8 samples, resnet18 at {size}x{size} ==")
    torch.manual_seed(0)
    model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=size)
    images, labels = DigitsDataModule(image_size=size, seed=0).sample_images(8)
    cb = InterpretationCallback(sample_images=images, sample_labels=labels, method="gradcam", num_samples=8)
    trainer = pl.Trainer(accelerator="cpu", logger=False, default_root_dir=str(root / "interp"),
                         enable_progress_bar=False, enable_model_summary=False)
    cb.setup(trainer, model, "fit")
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()

    def fwd_bwd_batch() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()

    def fwd_bwd_single() -> None:
        model.zero_grad(set_to_none=True)
        for i in range(8):
            loss_fn(model(images[i : i + 1]), labels[i : i + 1]).backward()

    def explain_only() -> None:
        cb.explainer.explain(images, target_class=labels)

    def callback_call() -> None:
        cb.log_interpretation(trainer, model)

    for fn in (fwd_bwd_batch, fwd_bwd_single, explain_only, callback_call):  # warm-up
        fn()
    # interleaved, so that load from other processes hits every measurement alike; the ratio is
    # taken within each repeat and the median kept
    rows = []
    for _ in range(args.repeats):
        row = {}
        for name, fn in (("batch", fwd_bwd_batch), ("single", fwd_bwd_single), ("explain", explain_only),
                         ("call", callback_call)):
            start = time.perf_counter()
            fn()
            row[name] = time.perf_counter() - start
        rows.append(row)
    model.zero_grad(set_to_none=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ratio = statistics.median(r["call"] / r["batch"] for r in rows)
    ratio_single = statistics.median(r["call"] / r["single"] for r in rows)
    print(f"  forward+backward, batch of 8 (train mode, weight grads): {med('batch') * 1000:8.1f} ms")
    print(f"  8 single-image forward+backward passes:                  {med('single') * 1000:8.1f} ms")
    print(f"  GradCAM explain() of the 8 images alone:                  {med('explain') * 1000:8.1f} ms")
    print(f"  whole callback call (predict + explain + overlays + PNG): {med('call') * 1000:8.1f} ms")
    print(f"  callback call / fwd+bwd of the batch of 8:   {ratio:5.2f}x  (target <= 1.5x)  "
          f"{'PASS' if ratio <= 1.5 else 'FAIL'}")
    print(f"  callback call / 8 single fwd+bwd passes:     {ratio_single:5.2f}x")
    print("  (medians of per-repeat ratios over interleaved repeats)")
    args.verdicts.append(f"InterpretationCallback GradCAM call / fwd+bwd of 8: {ratio:.2f}x (target <= 1.5x): "
                         f"{'PASS' if ratio <= 1.5 else 'FAIL'}")
    return ratio <= 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per fit (GramMatrix fires every 100)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds of the fits (>= 9 for a verdict)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=KINDS, metavar="KIND",
                        help=f"the fits of each round, of {', '.join(KINDS)} (default: all; baseline and control "
                             "are always run: every callback is judged against them)")
    parser.add_argument("--image-size", type=int, default=32, help="digits image size for the throughput fits")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--interp-image-size", type=int, default=224, help="image size of the GradCAM comparison")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each GradCAM measurement")
    parser.add_argument("--quick", action="store_true", help="5 rounds, 3 repeats (a smoke run)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-interpretation", action="store_true")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="keep glibc's malloc defaults (run.py's keep_freed_memory=false): every fit then takes "
                             "~100k+ page faults, a number that varies with the heap's history, and so does its time")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of each fit (default: 1 for the lockstep fits, torch's default with "
                             "--sequential); with --shards, also the cores each shard is pinned to")
    parser.add_argument("--shards", type=int, default=1,
                        help="run the rounds in this many processes at once, each pinned to --threads cores of its "
                             "own, and judge the pooled rounds (a multi-core machine: --shards 4 gives 4x the rounds)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no round that would end after this many minutes (the rounds done are judged)")
    parser.add_argument("--rounds-file", default=None,
                        help="append every finished round to this file, one JSON line each (for --combine)")
    parser.add_argument("--combine", nargs="+", default=None, metavar="ROUNDS_FILE",
                        help="judge the rounds of these --rounds-file files, pooled, without fitting anything")
    parser.add_argument("--sequential", action="store_true",
                        help="run each round's fits one after another in this process, whole, with torch's default "
                             "threads (the design before the lockstep one: two identical fits then differ by 5-12%%)")
    parser.add_argument("--mirror-rounds-file", default=None, help=argparse.SUPPRESS)  # a shard: the user's file too
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)  # a shard's label on its lines
    parser.add_argument("--no-verdict", action="store_true", help=argparse.SUPPRESS)  # a shard: rounds only
    args = parser.parse_args()
    args.started = time.perf_counter()
    args.kinds = [k for k in KINDS if k in {*args.kinds, "baseline", "control"}]
    if args.quick:
        args.rounds, args.repeats = 5, 3
    if args.combine:
        args.skip_interpretation = True
    args.verdicts = []
    # the fits' torch threads: lockstep fits take turns, so each has the cores alone while it runs, but
    # a pool of 2+ threads per fit left them idle between turns and waking up (~1.7x slower steps here)
    args.fit_threads = args.threads or (None if args.sequential or args.combine else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    # as run.py does by default (keep_freed_memory=true): with glibc's defaults each fit's page faults
    # (memory handed back to the OS and faulted in again every step) vary with the heap's history, and
    # with them its time: a noise larger than the overheads judged here
    kept = False if args.glibc_malloc else keep_freed_memory()
    print(f"{args.prefix}torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; malloc: "
          f"{'freed memory kept (run.py default keep_freed_memory=true)' if kept else 'glibc defaults'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ok = [] if args.skip_throughput else bench_throughput(args, root)
        if not args.skip_interpretation:
            ok.append(bench_interpretation(args, root))
    if args.no_verdict:
        return 0
    print()
    for line in args.verdicts:
        print(line)
    print("all targets met" if all(ok) else "some targets missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
