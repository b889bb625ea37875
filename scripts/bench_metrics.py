"""Benchmark deletion + insertion (interpret.metrics) against its floor and a per-image loop.

On the same inputs (timm resnet18, random weights, 8 x 3 x 224 x 224 by default) and with the
same maps, this prints medians over ``--repeats`` rounds (floor and metric alternate inside a
round, so slow drift of a shared machine hits both alike):

- **floor**: ``2 x steps`` batched forward passes of the batch under ``torch.no_grad()``, written
  inline in plain PyTorch: the least any batched deletion + insertion of ``steps`` steps can cost
  (it builds no perturbed image at all);
- **deletion_insertion**: ``interpret.metrics.deletion_insertion(..., n_steps=steps)``, which scores
  ``2 x (steps + 1)`` points per image (both ends included) and builds every perturbed image;
  target: at most 1.1 x the floor;
- **one image at a time**: the same metric as a loop over images and steps, one forward pass per
  perturbed image (how RISE's reference code scores a single image), timed once (``--single-repeats``),
  and checked to give the same AUCs.

Usage::

    python scripts/bench_metrics.py                     # 8 x 224 px, 50 steps, 3 repeats
    python scripts/bench_metrics.py --repeats 5 --chunk 32
    python scripts/bench_metrics.py --quick             # 4 x 112 px, 20 steps
    python scripts/bench_metrics.py --threads 1         # steadier on a busy machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

TARGET = 1.1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _one_image_at_a_time(model, x, maps, targets, steps):
    """Deletion and insertion AUCs with one forward pass per perturbed image (plain PyTorch)."""
    from torchvision.transforms.functional import gaussian_blur

    _, _, h, w = x.shape
    hw = h * w
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * hw / steps).long().tolist()
    aucs = {"deletion": [], "insertion": []}
    with torch.no_grad():
        for i in range(x.shape[0]):
            image = x[i : i + 1]
            order = torch.sort(maps[i].flatten(), descending=True, stable=True).indices
            blur = gaussian_blur(image, [11, 11], [5.0, 5.0])
            for mode, start, source in (("deletion", image, torch.zeros_like(image)), ("insertion", blur, image)):
                scores = []
                for count in counts:
                    current = start.clone().flatten(2)
                    current[:, :, order[:count]] = source.flatten(2)[:, :, order[:count]]
                    probs = torch.softmax(model(current.view_as(image)), dim=1)
                    scores.append(float(probs[0, targets[i]]))
                curve = torch.tensor(scores)
                aucs[mode].append(float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / steps))
    return {k: torch.tensor(v) for k, v in aucs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=None, help="batch_size of the metric (default: its own)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument("--single-repeats", type=int, default=1, help="rounds of the one-image-at-a-time loop (0 skips it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="4 x 112 px, 20 steps")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.steps = 4, 112, 20
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    import timm

    from interpret.metrics import deletion_insertion

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=1000).to(device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    maps = torch.rand(args.batch, args.size, args.size, device=device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    kwargs = {"n_steps": args.steps} | ({"batch_size": args.chunk} if args.chunk else {})

    def floor() -> None:
        with torch.no_grad():
            for _ in range(2 * args.steps):
                model(x)

    def ours():
        return deletion_insertion(model, x, maps, targets, **kwargs)

    with torch.no_grad():  # warm-up
        model(x)
    deletion_insertion(model, x, maps, targets, n_steps=2)
    floor_times, our_times = [], []
    for _ in range(args.repeats):
        seconds, _ = _timed(floor, device)
        floor_times.append(seconds)
        seconds, result = _timed(ours, device)
        our_times.append(seconds)
    floor_s, ours_s = statistics.median(floor_times), statistics.median(our_times)
    ratio = ours_s / floor_s
    chunk = args.chunk or "default"
    print(
        f"resnet18, {args.batch} x 3 x {args.size} x {args.size}, {args.steps} steps, metric batch_size={chunk}, "
        f"device {device}, {torch.get_num_threads()} threads, medians of {args.repeats}"
    )
    print(f"{'what':44s} {'seconds':>9s} {'x floor':>8s}")
    print(f"{'floor: 2 x ' + str(args.steps) + ' batched forward passes':44s} {floor_s:9.3f} {1.0:8.2f}")
    verdict = "OK" if ratio <= TARGET else "OVER"
    print(f"{'deletion_insertion (batched)':44s} {ours_s:9.3f} {ratio:8.2f}  target <= {TARGET} [{verdict}]")
    if args.single_repeats > 0:
        single_times = []
        for _ in range(args.single_repeats):
            seconds, single = _timed(lambda: _one_image_at_a_time(model, x, maps, targets, args.steps), device)
            single_times.append(seconds)
        single_s = statistics.median(single_times)
        print(f"{'the same, one image at a time':44s} {single_s:9.3f} {single_s / floor_s:8.2f}  "
              f"({single_s / ours_s:.1f}x the batched metric)")
        gap = max(
            float((single[mode] - result[mode].auc).abs().max()) for mode in ("deletion", "insertion")
        )
        print(f"largest AUC difference between the two: {gap:.2e}")


if __name__ == "__main__":
    main()
