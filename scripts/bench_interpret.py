"""Benchmark the interpret package against independent floors and against captum / pytorch-grad-cam.

Everything is measured in one run on the same inputs (timm resnet18, random weights, 224x224,
batch 8 by default) and printed as medians over ``--repeats`` (every figure, default 5; the
contenders of a section run in alternating rounds) and as ratios. The floors are written inline below in plain PyTorch (``register_forward_hook``,
``torch.autograd.grad``), using nothing of the project's hooks or helpers:

- CAM floor: one forward + ``torch.autograd.grad(score, layer_output)`` with every parameter
  frozen (no weight gradients, nothing computed below the layer). Compared with a forward +
  ``score.backward()`` that computes weight gradients (what pytorch-grad-cam does): their ratio is
  the speed-up that comes from freezing parameters.
- IG floor: the same number of forward+backward passes at the same chunk size as ours
  (``internal_batch_size`` scaled images per pass), path construction (baseline + alpha * diff,
  per chunk) and the weighted accumulation included, parameters frozen. The same passes one
  quadrature step at a time (one pass of ``batch`` images per step) give the speed-up that comes
  from batching (chunking the steps), and with weight gradients (``.backward()``) the one that
  comes from freezing.
- SmoothGrad floor: the same noisy copies (noise drawn per chunk, as ours), forward + gradient
  to the input per chunk, parameters frozen.
- Detection (``interpret.explain_detection`` on torchvision detectors, random weights): the floor
  of explaining one detection is one forward of the detector + one backward of that detection's
  score (to the CAM layer for GradCAM/GradCAM++, to the input for IG/SmoothGrad, parameters
  frozen), written with ``model([x])`` and ``torch.autograd.grad``. explain_detection's time for N
  detections is divided by N and compared with it: the CAMs share one forward for all N (one
  backward each, vectorised), so they can go below the one-detection floor; IG and SmoothGrad need
  ``steps``/``num_samples`` passes per detection and are compared with as many floor passes, in
  chunks of the same ``internal_batch_size``. Measured (2 busy CPU cores, ``--threads 1``, 240x320,
  10 detections): GradCAM per detection 0.14x the one-detection floor on
  fasterrcnn_mobilenet_v3_large_320_fpn, 0.29x on retinanet_resnet50_fpn, 0.24x on fcos_resnet50_fpn,
  0.29x on ssdlite320_mobilenet_v3_large (GradCAM++ alike); IG and SmoothGrad (8 passes per
  detection) 0.37-0.39x their floor on Faster R-CNN (a pass skips the RPN, NMS and the box head of
  every other proposal: only the explained detections' proposals are pooled), 0.8-0.9x on FCOS and
  SSDlite (``--quick``). The vectorised backward (``is_grads_batched``) measured within 5% of N
  backward passes through the retained graph on the CPU: the floor of one backward per detection
  stays, the forward is shared.

Usage::

    python scripts/bench_interpret.py                 # CPU (and GPU if present: --device auto)
    python scripts/bench_interpret.py --quick         # small and fast: 112 px, batch 4, 16 steps
    python scripts/bench_interpret.py --device cuda --repeats 9
    python scripts/bench_interpret.py --only detection --threads 1   # the detection section alone

Beside it: ``bench_detection.py`` (the detection section), ``bench_common.py`` (alternating rounds,
frozen parameters).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_common import Frozen, alternating_rounds  # noqa: E402
from bench_detection import DETECTORS, bench_detection  # noqa: E402


def _model(device: torch.device) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=1000).to(device).eval()


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: not inherited from the parent, unlike ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_child(args: argparse.Namespace) -> None:
    """Run one IG call in this fresh process and print its peak memory as JSON."""
    from interpret import IntegratedGradients

    device = torch.device(args.device)
    model = _model(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    explainer = IntegratedGradients(model, steps=args.steps, internal_batch_size=args.memory_child)
    model(x[:1])  # allocator warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        explainer.explain(x, target_class=0)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _peak_rss()
        explainer.explain(x, target_class=0)
        peak = _peak_rss() - base
    print(json.dumps({"peak_bytes": int(peak)}))


def _peak_memory(args: argparse.Namespace, device: torch.device, chunk: int) -> int:
    command = [
        sys.executable, __file__, "--device", device.type, "--batch", str(args.batch), "--size", str(args.size),
        "--steps", str(args.steps), "--memory-child", str(chunk),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return int(json.loads(out)["peak_bytes"])


def bench(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from captum.attr import IntegratedGradients as CaptumIG
    from captum.attr import NoiseTunnel
    from captum.attr import Saliency as CaptumSaliency
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus as PGCGradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from interpret import GradCAM, GradCAMPlusPlus, IntegratedGradients, Saliency, SmoothGrad

    model = _model(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    targets = torch.arange(args.batch, device=device) % 1000
    rows = torch.arange(args.batch, device=device)
    r = args.repeats
    figures: dict[str, float] = {}
    print(f"device={device} ({torch.get_num_threads()} threads)  model=resnet18  input={args.batch}x3x{args.size}x{args.size}"
          f"  steps={args.steps}  samples={args.samples}  internal_batch_size={args.internal_batch_size}"
          f"  repeats={r} per figure (median)")

    # ------------------------------------------------------------ CAM floors
    def cam_floor_frozen() -> None:
        """forward + autograd.grad(score, layer4 output), parameters frozen: the least a CAM costs."""
        captured: list[torch.Tensor] = []

        def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf.clone()  # the clone keeps later in-place ops on the output legal

        with Frozen(model):
            handle = model.layer4.register_forward_hook(hook)
            try:
                score = model(x)[rows, targets].sum()
            finally:
                handle.remove()
            torch.autograd.grad(score, captured[0])

    def cam_floor_weight_grads() -> None:
        """forward + score.backward() with weight gradients, keeping layer4's output gradient."""
        captured: list[torch.Tensor] = []
        handle = model.layer4.register_forward_hook(lambda m, i, o: captured.append(o) or o.retain_grad())
        try:
            model.zero_grad(set_to_none=True)
            model(x)[rows, targets].sum().backward()
        finally:
            handle.remove()

    cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    ours_cam = {"GradCAM": GradCAM(model, "layer4"), "GradCAM++": GradCAMPlusPlus(model, "layer4")}
    theirs_cam = {
        "GradCAM": PGCGradCAM(model=model, target_layers=[model.layer4]),
        "GradCAM++": PGCGradCAMPlusPlus(model=model, target_layers=[model.layer4]),
    }
    contenders: dict[str, Callable[[], object]] = {"floor": cam_floor_frozen, "weights": cam_floor_weight_grads}
    for name in ours_cam:
        contenders[f"{name}_ours"] = lambda e=ours_cam[name]: e.explain(x, target_class=targets)
        contenders[f"{name}_pytorch_grad_cam"] = lambda c=theirs_cam[name]: c(input_tensor=x, targets=cam_targets)
    cam_times = alternating_rounds(contenders, r, device)
    for cam in theirs_cam.values():
        cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    t_frozen, t_weights = cam_times["floor"], cam_times["weights"]
    figures.update(cam_floor_frozen=t_frozen, cam_floor_weight_grads=t_weights)
    print("\nCAM floors (s):")
    print(f"  forward + grad to layer4 output, parameters frozen   {t_frozen:8.3f}   <- the CAM floor")
    print(f"  forward + backward() with weight gradients           {t_weights:8.3f}")
    print(f"  -> freezing parameters saves {t_weights / t_frozen:5.2f}x (a backward without weight gradients,"
          " which then also stops at the layer: nothing below it needs a gradient)")

    print("\nGradCAM family (target layer4):")
    for name in ours_cam:
        t_ours, t_theirs = cam_times[f"{name}_ours"], cam_times[f"{name}_pytorch_grad_cam"]
        figures[f"{name}_ours"], figures[f"{name}_pytorch_grad_cam"] = t_ours, t_theirs
        print(f"  {name:10s} ours {t_ours:7.3f}s = {t_ours / t_frozen:5.2f}x the CAM floor;"
              f"  pytorch-grad-cam {t_theirs:7.3f}s = {t_theirs / t_frozen:5.2f}x the floor"
              f" ({t_theirs / t_weights:4.2f}x the weight-gradient backward) -> ours is {t_theirs / t_ours:5.2f}x faster")

    # ---------------------------------------------------- Integrated Gradients
    chunk, steps, batch = args.internal_batch_size, args.steps, args.batch
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, device=device, dtype=x.dtype)
    quad = torch.tensor(weights / 2, device=device, dtype=torch.float32)
    baseline = torch.zeros_like(x)

    def ig_passes(size: int, frozen: bool) -> torch.Tensor:
        """All batch x steps scaled images in passes of ``size``: path, forward, grad, accumulate."""
        diff = x - baseline
        total = torch.zeros_like(x, dtype=torch.float32)
        count = batch * steps
        context = Frozen(model) if frozen else contextlib.nullcontext()
        with context:
            for start in range(0, count, size):
                ids = torch.arange(start, min(start + size, count), device=device)
                image, step = ids // steps, ids % steps
                scaled = (baseline[image] + alphas[step].view(-1, 1, 1, 1) * diff[image]).requires_grad_(True)
                score = model(scaled)[torch.arange(len(ids), device=device), targets[image]].sum()
                if frozen:
                    (grad,) = torch.autograd.grad(score, scaled)
                else:
                    model.zero_grad(set_to_none=True)
                    score.backward()
                    grad = scaled.grad
                total.index_add_(0, image, grad.float() * quad[step].view(-1, 1, 1, 1))
        return diff * total

    ours_ig = IntegratedGradients(model, baseline=baseline[0], steps=steps, internal_batch_size=chunk)
    captum_ig = CaptumIG(model)
    ig_times = alternating_rounds(
        {
            "floor": lambda: ig_passes(chunk, True),
            "per_step": lambda: ig_passes(batch, True),  # one pass of `batch` images per step
            "weights": lambda: ig_passes(chunk, False),
            "ours": lambda: ours_ig.attribute(x, target_class=targets),
            "captum": lambda: captum_ig.attribute(
                x, baselines=baseline, target=targets, n_steps=steps, method="gausslegendre",
                internal_batch_size=chunk,
            ),
        },
        r,
        device,
    )
    model.zero_grad(set_to_none=True)
    t_ig_floor, t_ig_per_step, t_ig_weights = ig_times["floor"], ig_times["per_step"], ig_times["weights"]
    t_ig, t_captum = ig_times["ours"], ig_times["captum"]
    passes = -(-batch * steps // chunk)
    figures.update(ig_floor=t_ig_floor, ig_floor_per_step=t_ig_per_step, ig_floor_weight_grads=t_ig_weights,
                   ig_ours=t_ig, ig_captum=t_captum)
    print(f"\nIntegrated Gradients ({steps} steps x {batch} images, internal_batch_size={chunk}: {passes} passes):")
    print(f"  IG floor ({passes} frozen passes of <= {chunk}, path included)  {t_ig_floor:8.3f}s")
    print(f"  ours {t_ig:7.3f}s = {t_ig / t_ig_floor:5.2f}x the IG floor;  captum {t_captum:7.3f}s"
          f" = {t_captum / t_ig_floor:5.2f}x the floor -> ours/captum = {t_ig / t_captum:5.2f}")
    print(f"  -> batching: {steps} passes of {batch} images take {t_ig_per_step:7.3f}s, "
          f"{t_ig_per_step / t_ig_floor:5.2f}x the chunked floor (speed-up from chunking the steps)")
    print(f"  -> freezing: the same passes with weight gradients take {t_ig_weights:7.3f}s, "
          f"{t_ig_weights / t_ig_floor:5.2f}x (speed-up from a backward without weight gradients)")

    # -------------------------------------------------------------- SmoothGrad
    samples = args.samples

    def smoothgrad_floor() -> torch.Tensor:
        flat = x.flatten(1)
        sigma = (0.15 * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)
        generator = torch.Generator(device=device).manual_seed(0)
        total = torch.zeros_like(x)
        count = batch * samples
        with Frozen(model):
            for start in range(0, count, chunk):
                image = torch.arange(start, min(start + chunk, count), device=device) // samples
                noise = torch.randn((len(image), *x.shape[1:]), generator=generator, device=device)
                noisy = (x[image] + sigma[image] * noise).requires_grad_(True)
                score = model(noisy)[torch.arange(len(image), device=device), targets[image]].sum()
                (grad,) = torch.autograd.grad(score, noisy)
                total.index_add_(0, image, grad.abs())
        return total / samples

    smooth = SmoothGrad(Saliency(model), noise_level=0.15, num_samples=samples, internal_batch_size=chunk)
    span = float(x.max() - x.min())
    tunnel = NoiseTunnel(CaptumSaliency(model))
    sg_times = alternating_rounds(
        {
            "floor": smoothgrad_floor,
            "ours": lambda: smooth.attribute(x, target_class=targets),
            "captum": lambda: tunnel.attribute(
                x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=max(1, chunk // batch),
                stdevs=0.15 * span, target=targets, abs=True,
            ),
        },
        r,
        device,
    )
    model.zero_grad(set_to_none=True)
    t_sg_floor, t_smooth, t_tunnel = sg_times["floor"], sg_times["ours"], sg_times["captum"]
    figures.update(smoothgrad_floor=t_sg_floor, smoothgrad_ours=t_smooth, smoothgrad_captum=t_tunnel)
    print(f"\nSmoothGrad (saliency base, {samples} samples x {batch} images, internal_batch_size={chunk}):")
    print(f"  SmoothGrad floor (frozen passes of <= {chunk}, noise included) {t_sg_floor:8.3f}s")
    print(f"  ours {t_smooth:7.3f}s = {t_smooth / t_sg_floor:5.2f}x the floor;  captum NoiseTunnel {t_tunnel:7.3f}s"
          f" = {t_tunnel / t_sg_floor:5.2f}x the floor -> ours/captum = {t_smooth / t_tunnel:5.2f}")

    # ------------------------------------------------------------------ memory
    if not args.skip_memory:
        print(f"\nIntegrated Gradients peak memory ({steps} steps, batch {args.batch}):")
        for size in args.memory_chunks:
            peak = _peak_memory(args, device, size)
            figures[f"ig_peak_mib_chunk{size}"] = peak / 2**20
            print(f"  internal_batch_size={size:4d}: {peak / 2**20:8.1f} MiB above the model's footprint")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cpu, then cuda when present)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of every figure (median), >= 1")
    parser.add_argument("--quick", action="store_true", help="112 px, batch 4, 16 steps/samples")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write every figure (seconds, MiB) to this JSON file")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--internal-batch-size", type=int, default=64)
    parser.add_argument("--memory-chunks", type=int, nargs=2, default=[16, 128])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("all", "classification", "detection"), default="all",
                        help="which sections to run (default all)")
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS[:2]),
                        help="torchvision detectors of the detection section")
    parser.add_argument("--detections", type=int, default=10, help="detections explained per image")
    parser.add_argument("--det-height", type=int, default=240)
    parser.add_argument("--det-width", type=int, default=320)
    parser.add_argument("--det-min-size", type=int, default=320, help="the detector's min_size (max_size 5/3 of it)")
    parser.add_argument("--det-classes", type=int, default=21)
    parser.add_argument("--det-steps", type=int, default=8, help="IG steps in the detection section")
    parser.add_argument("--det-samples", type=int, default=8, help="SmoothGrad samples in the detection section")
    parser.add_argument("--det-internal-batch-size", type=int, default=8)
    parser.add_argument("--det-repeats", type=int, default=3)
    parser.add_argument("--det-skip-input", action="store_true", help="CAMs only (IG/SmoothGrad are the slow part)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.quick:
        args.size, args.batch, args.steps, args.samples = 112, 4, 16, 16
        args.det_height, args.det_width, args.det_min_size, args.detections = 120, 160, 160, 5
        args.det_steps, args.det_samples = 4, 4
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        _memory_child(args)
        return
    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    results = {}
    for device in devices:
        figures: dict[str, float] = {}
        if args.only in ("all", "classification"):
            figures.update(bench(args, device))
        if args.only in ("all", "detection"):
            figures.update(bench_detection(args, device))
        results[device.type] = figures
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
