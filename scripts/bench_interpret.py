"""Benchmark the interpret package against its floors and against captum / pytorch-grad-cam.

Everything is measured in one run on the same inputs (timm resnet18, random weights, 224x224,
batch 8 by default) and printed as ratios (medians over ``--repeats``):

- GradCAM and GradCAM++ against one forward+backward of the batch (two floors: a full backward
  with weight gradients, and the backward down to the target layer only) and against
  pytorch-grad-cam;
- Integrated Gradients (50 steps) against 50 batched forward+backward passes to the input, and
  against captum with the same steps, quadrature and internal batch size;
- SmoothGrad (vanilla-gradient base, 50 samples) likewise against captum's NoiseTunnel;
- the peak memory of Integrated Gradients at two ``internal_batch_size`` values (CPU: peak RSS
  (VmHWM) of a fresh subprocess above its peak before the call; CUDA: ``torch.cuda.max_memory_allocated``).

Usage::

    python scripts/bench_interpret.py                 # CPU (and GPU if present: --device auto)
    python scripts/bench_interpret.py --quick         # small and fast: 112 px, batch 4, 16 steps
    python scripts/bench_interpret.py --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def bench(args: argparse.Namespace, device: torch.device) -> None:
    from captum.attr import IntegratedGradients as CaptumIG
    from captum.attr import NoiseTunnel
    from captum.attr import Saliency as CaptumSaliency
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam import GradCAMPlusPlus as PGCGradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from interpret import GradCAM, GradCAMPlusPlus, IntegratedGradients, Saliency, SmoothGrad
    from interpret.base import preserve_model_state
    from interpret.hooks import ActivationCapture, HookManager

    model = _model(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    targets = torch.arange(args.batch, device=device) % 1000
    rows = torch.arange(args.batch, device=device)
    r = args.repeats
    print(f"device={device} ({torch.get_num_threads()} threads)  model=resnet18  input={args.batch}x3x{args.size}x{args.size}"
          f"  steps={args.steps}  samples={args.samples}  repeats={r} (median)")

    # ------------------------------------------------------------------ floors
    def forward_full_backward() -> None:
        model.zero_grad(set_to_none=True)
        model(x)[rows, targets].sum().backward()

    def forward_backward_to_layer() -> None:
        with preserve_model_state(model):
            capture = ActivationCapture()
            with HookManager() as hooks:
                hooks.register_forward_hook(model.layer4, capture)
                score = model(x)[rows, targets].sum()
            torch.autograd.grad(score, capture.activation)

    def forward_backward_to_input(batch: torch.Tensor, tgt: torch.Tensor) -> None:
        with preserve_model_state(model):
            inputs = batch.detach().requires_grad_(True)
            torch.autograd.grad(model(inputs)[torch.arange(len(tgt), device=device), tgt].sum(), inputs)

    t_full = _time(forward_full_backward, r, device)
    model.zero_grad(set_to_none=True)
    t_layer = _time(forward_backward_to_layer, r, device)
    t_input = _time(lambda: forward_backward_to_input(x, targets), r, device)
    print("\nfloors (s):")
    print(f"  forward + full backward (weight grads)      {t_full:8.3f}")
    print(f"  forward + backward to layer4 only           {t_layer:8.3f}")
    print(f"  forward + backward to the input (frozen)    {t_input:8.3f}")

    # ----------------------------------------------------------------- GradCAM
    print("\nGradCAM family (target layer4):")
    for name, ours_cls, theirs_cls in (("GradCAM", GradCAM, PGCGradCAM), ("GradCAM++", GradCAMPlusPlus, PGCGradCAMPlusPlus)):
        ours = ours_cls(model, "layer4")
        t_ours = _time(lambda: ours.explain(x, target_class=targets), r, device)
        theirs = theirs_cls(model=model, target_layers=[model.layer4])
        cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]
        t_theirs = _time(lambda: theirs(input_tensor=x, targets=cam_targets), r, device)
        theirs.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        print(f"  {name:10s} {t_ours:7.3f}s = {t_ours / t_full:5.2f}x fwd+full-bwd, {t_ours / t_layer:5.2f}x fwd+bwd-to-layer;"
              f"  pytorch-grad-cam {t_theirs:7.3f}s -> ours is {t_theirs / t_ours:5.2f}x faster")

    # ------------------------------------------------------- Integrated Gradients
    chunk = args.internal_batch_size
    steps = args.steps
    scaled = [x * ((k + 0.5) / steps) for k in range(steps)]

    def batched_passes() -> None:
        for batch in scaled:
            forward_backward_to_input(batch, targets)

    t_passes = _time(batched_passes, max(1, r // 2), device)
    ours_ig = IntegratedGradients(model, baseline=torch.zeros_like(x[0]), steps=steps, internal_batch_size=chunk)
    t_ig = _time(lambda: ours_ig.attribute(x, target_class=targets), max(1, r // 2), device)
    captum_ig = CaptumIG(model)
    t_captum = _time(
        lambda: captum_ig.attribute(
            x, baselines=torch.zeros_like(x), target=targets, n_steps=steps, method="gausslegendre",
            internal_batch_size=chunk,
        ),
        max(1, r // 2),
        device,
    )
    model.zero_grad(set_to_none=True)
    print(f"\nIntegrated Gradients ({steps} steps, internal_batch_size={chunk}):")
    print(f"  ours {t_ig:7.3f}s = {t_ig / t_passes:5.2f}x {steps} batched fwd+bwd passes ({t_passes:.3f}s);"
          f"  captum {t_captum:7.3f}s -> ours/captum = {t_ig / t_captum:5.2f}")

    # -------------------------------------------------------------- SmoothGrad
    samples = args.samples
    smooth = SmoothGrad(Saliency(model), noise_level=0.15, num_samples=samples, internal_batch_size=chunk)
    t_smooth = _time(lambda: smooth.attribute(x, target_class=targets), max(1, r // 2), device)
    span = float(x.max() - x.min())
    tunnel = NoiseTunnel(CaptumSaliency(model))
    t_tunnel = _time(
        lambda: tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=max(1, chunk // args.batch),
            stdevs=0.15 * span, target=targets, abs=True,
        ),
        max(1, r // 2),
        device,
    )
    model.zero_grad(set_to_none=True)
    print(f"\nSmoothGrad (saliency base, {samples} samples, internal_batch_size={chunk}):")
    print(f"  ours {t_smooth:7.3f}s = {t_smooth / t_passes * steps / samples:5.2f}x {samples} batched fwd+bwd passes;"
          f"  captum NoiseTunnel {t_tunnel:7.3f}s -> ours/captum = {t_smooth / t_tunnel:5.2f}")

    # ------------------------------------------------------------------ memory
    if not args.skip_memory:
        print(f"\nIntegrated Gradients peak memory ({steps} steps, batch {args.batch}):")
        for size in args.memory_chunks:
            peak = _peak_memory(args, device, size)
            print(f"  internal_batch_size={size:4d}: {peak / 2**20:8.1f} MiB above the model's footprint")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cpu, then cuda when present)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="112 px, batch 4, 16 steps/samples, 1 repeat")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--internal-batch-size", type=int, default=64)
    parser.add_argument("--memory-chunks", type=int, nargs=2, default=[16, 128])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch, args.steps, args.samples, args.repeats = 112, 4, 16, 16, 1
    if args.memory_child is not None:
        _memory_child(args)
        return
    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    for device in devices:
        bench(args, device)
        print()


if __name__ == "__main__":
    main()
