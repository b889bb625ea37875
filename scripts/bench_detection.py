"""The detection section of ``scripts/bench_interpret.py`` (``--only detection``).

``interpret.explain_detection`` on torchvision detectors (random weights) against its floor: one
forward of the detector + one backward of one detection's score (to the CAM layer for the CAMs, to
the input for IG/SmoothGrad, parameters frozen). What is measured and the figures: the docstring
of ``scripts/bench_interpret.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_common import Frozen, alternating_rounds

__all__ = ["DETECTORS", "bench_detection"]

DETECTORS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssdlite320_mobilenet_v3_large")


def _detector(name: str, args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    from torchvision.models import detection as tv

    torch.manual_seed(0)
    keywords: dict[str, object] = {"box_score_thresh": 0.0} if "rcnn" in name else {"score_thresh": 0.0}
    if not name.startswith("ssd"):  # SSD keeps its fixed size
        keywords.update(min_size=args.det_min_size, max_size=int(args.det_min_size * 5 / 3))
    model = getattr(tv, name)(weights=None, weights_backbone=None, num_classes=args.det_classes, **keywords)
    return model.to(device).eval()


def bench_detection(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """explain_detection per detection against one forward + backward of the same detector."""
    from interpret import explain_detection
    from interpret.detectors import default_detection_layer

    n, steps, samples, chunk = args.detections, args.det_steps, args.det_samples, args.det_internal_batch_size
    r = args.det_repeats
    x = torch.rand(3, args.det_height, args.det_width, generator=torch.Generator().manual_seed(0)).to(device)
    figures: dict[str, float] = {}
    print(f"\nDetection: explain_detection on {n} detections of one {args.det_height}x{args.det_width} image"
          f" (random weights, {args.det_classes} classes), repeats={r} (median)")
    for name in args.detectors:
        model = _detector(name, args, device)
        layer_name = default_detection_layer(model)
        layer = dict(model.named_modules())[layer_name]
        with torch.no_grad():
            found = len(model([x])[0]["scores"])
        if found < n:
            print(f"  {name}: only {found} detections, skipped")
            continue

        def forward() -> None:
            with torch.no_grad():
                model([x])

        def floor_cam(model: torch.nn.Module = model, layer: torch.nn.Module = layer) -> None:
            """one forward + grad of one detection's score w.r.t. the layer output, parameters frozen"""
            captured: list[torch.Tensor] = []

            def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
                leaf = output.detach().requires_grad_(True)
                captured.append(leaf)
                return leaf.clone()

            with Frozen(model):
                handle = layer.register_forward_hook(hook)
                try:
                    score = model([x])[0]["scores"][0]
                finally:
                    handle.remove()
                torch.autograd.grad(score, captured[0])

        def floor_input(passes: int, model: torch.nn.Module = model) -> None:
            """``passes`` images in chunks of ``chunk``: forward + grad of one score per image w.r.t. the input"""
            with Frozen(model):
                for start in range(0, passes, chunk):
                    size = min(chunk, passes - start)
                    alphas = torch.linspace(0.1, 1.0, size, device=device).view(-1, 1, 1, 1)
                    batch = (alphas * x).requires_grad_(True)
                    score = sum(out["scores"][0] for out in model(list(batch)))
                    torch.autograd.grad(score, batch)

        def ours(method: str, **kwargs: object) -> Callable[[], object]:
            return lambda: explain_detection(model, x, method=method, detection_threshold=0.0, max_detections=n, **kwargs)

        times = alternating_rounds(
            {
                "forward": forward,
                "floor_cam": floor_cam,
                "gradcam": ours("gradcam"),
                "gradcam++": ours("gradcam++"),
                "floor_one_input": lambda: floor_input(1),
            },
            r,
            device,
        )
        t_floor = times["floor_cam"]
        print(f"\n  {name} (CAM layer {layer_name}):")
        print(f"    one forward, no grad                                      {times['forward']:8.3f}s")
        print(f"    floor: one forward + backward to the layer (1 detection)  {t_floor:8.3f}s")
        print(f"    floor: one forward + backward to the input (1 detection)  {times['floor_one_input']:8.3f}s")
        for method in ("gradcam", "gradcam++"):
            per = times[method] / n
            figures[f"det_{name}_{method}_per_detection"] = per
            print(f"    {method:10s} {times[method]:7.3f}s for {n} = {per:7.3f}s per detection = {per / t_floor:5.2f}x the"
                  f" one-detection floor ({n} x the floor would be {n * t_floor:7.3f}s: {n * t_floor / times[method]:4.1f}x slower)")
        figures.update({f"det_{name}_forward": times["forward"], f"det_{name}_floor_cam": t_floor,
                        f"det_{name}_floor_input": times["floor_one_input"]})
        if args.det_skip_input:
            continue
        input_times = alternating_rounds(
            {
                "floor_ig": lambda: floor_input(n * steps),
                "integrated_gradients": ours("integrated_gradients", steps=steps, internal_batch_size=chunk),
                "floor_sg": lambda: floor_input(n * samples),
                "smoothgrad": ours("smoothgrad", num_samples=samples, internal_batch_size=chunk),
            },
            r,
            device,
        )
        for method, floor, count in (("integrated_gradients", "floor_ig", steps), ("smoothgrad", "floor_sg", samples)):
            per, per_floor = input_times[method] / n, input_times[floor] / n
            figures[f"det_{name}_{method}_per_detection"] = per
            figures[f"det_{name}_{floor}_per_detection"] = per_floor
            print(f"    {method:20s} ({count:3d} passes/detection) {per:7.3f}s per detection = {per / per_floor:5.2f}x the"
                  f" floor of {count} forward+backward passes to the input ({per_floor:7.3f}s)")
    return figures
