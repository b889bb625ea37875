"""``explain.py`` on a classifier: one map per image and method, scored with ``evaluate_methods``.

Writes ``overlays/NN_<image>_<method>.png``, ``grid.png`` (a row per image: the input, then each
method's overlay), ``maps.npz`` (``map_<method>`` ``(N, H, W)``, ``methods``, ``images``,
``targets``, ``predicted``, ``probabilities``, ``masks`` on data with object masks),
``metrics.csv`` (``metrics=true``) and ``features/NN_<image>_<layer>.png`` (``features=[...]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from interpret.tasks import Task, class_name
from runner.artifacts import EXPLAIN_METRICS_FILE
from runner.explain.inputs import ExplainInputs
from runner.explain.model import LoadedModel
from runner.explain.writer import feature_file, map_key, overlay_file, save_grid, save_image, save_maps

log = logging.getLogger(__name__)

__all__ = ["ClassificationSamples", "ClassificationPhases"]


@dataclass
class ClassificationSamples:
    """The images explained, as the model sees them and as they are drawn, with its predictions."""

    batch: torch.Tensor
    names: list[str]
    sources: list[str]
    photos: list[np.ndarray]
    labels: list[int | None]
    masks: torch.Tensor | None
    probabilities: torch.Tensor
    predicted: torch.Tensor
    targets: torch.Tensor


def _print_table(table: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title="Explanation quality (mean [95% interval] over the images)")
    out.add_column("method")
    for metric in table.metrics:
        out.add_column(table.header(metric), justify="right")
    for method in table.methods:
        style = "dim" if method in ("random", "centre_gaussian") else None
        out.add_row(method, *[str(table.summaries[(method, m)]) for m in table.metrics], style=style)
    console = Console(width=160)
    console.print(out)
    for metric in table.metrics:
        console.print(table.recommendations[metric])


class ClassificationPhases:
    """The classification phases of the explain pipeline (see the module docstring)."""

    name = "classification"

    def __init__(self, task: Task) -> None:
        """``task``: ``interpret.task_for(model)``, what knows the task's CAM layer and class names."""
        self.task = task
        #: the recommendation lines of the last scoring (None before or without metrics)
        self.recommendations: list[str] | None = None

    def check(self, inputs: ExplainInputs, loaded: LoadedModel) -> None:
        """The ``features`` layers exist in the model (before anything is explained)."""
        from interpret import resolve_layer

        for layer in inputs.features:
            try:
                resolve_layer(loaded.model, layer)
            except ValueError as err:
                raise ValueError(f"features: {str(err).replace('target_layer', 'layer', 1)}") from None

    def samples(self, inputs: ExplainInputs, loaded: LoadedModel, pictures: list[Image.Image]) -> ClassificationSamples:
        """The given pictures (or the run's sample images), the model's predictions and the classes explained."""
        from interpret import image_to_uint8, pils_to_batch

        size, mean, std = loaded.size, loaded.mean, loaded.std
        masks = None
        if inputs.images:
            batch = pils_to_batch(pictures, size, mean, std)
            names = [Path(p).name for p in inputs.images]
            photos = [image_to_uint8(p.convert("RGB")) for p in pictures]
            labels: list[int | None] = [None] * len(pictures)
            sources = list(inputs.images)
        else:
            datamodule = loaded.datamodule
            batch, label_tensor = datamodule.sample_images(inputs.num_samples)
            if hasattr(datamodule, "sample_masks"):
                masks = datamodule.sample_masks(inputs.num_samples)
            names = [f"sample_{i:02d}" for i in range(batch.shape[0])]
            # sample images are model-sized (32 px on digits/shapes): overlays are drawn at 160 px or more (nearest neighbour)
            factor = max(1, -(-160 // max(1, min(size))))
            photos = [image_to_uint8(img, mean, std).repeat(factor, axis=0).repeat(factor, axis=1) for img in batch]
            labels = [int(v) for v in label_tensor]
            sources = ["sample"] * len(names)
        batch = batch.to(inputs.device)
        log.info(f"Explaining {batch.shape[0]} image(s) at {size[0]}x{size[1]} with {', '.join(inputs.methods)}")
        chunk = inputs.batch_size
        with torch.no_grad():
            probabilities = torch.cat([loaded.model(batch[i : i + chunk]).float().softmax(dim=1).cpu()
                                       for i in range(0, batch.shape[0], chunk)])
        predicted = probabilities.argmax(dim=1)
        classes = probabilities.shape[1]
        if inputs.target_class is not None and inputs.target_class >= classes:
            raise ValueError(f"target_class={inputs.target_class} but the model has {classes} classes (0 to {classes - 1})")
        targets = predicted if inputs.target_class is None else torch.full_like(predicted, inputs.target_class)
        return ClassificationSamples(batch, names, sources, photos, labels, masks, probabilities, predicted, targets)

    def explain(self, method: str, samples: ClassificationSamples, inputs: ExplainInputs, loaded: LoadedModel) -> np.ndarray:
        """``(N, H, W)`` maps of ``method`` for every sample's target class."""
        from interpret import get_explainer

        explainer = get_explainer(method, loaded.model, mean=loaded.mean, std=loaded.std, input_size=loaded.size,
                                  **inputs.method_kwargs.get(method, {}))
        heatmaps = explainer.explain_batch(samples.batch, batch_size=inputs.batch_size,
                                           target_class=samples.targets.to(inputs.device))
        return heatmaps.detach().float().cpu().numpy().reshape(samples.batch.shape[0], *samples.batch.shape[-2:])

    def count(self, result: np.ndarray) -> str:
        """What one method explained, for the log."""
        return f"{result.shape[0]} image(s)"

    def write(self, output_dir: Path, samples: ClassificationSamples, results: dict[str, np.ndarray],
              inputs: ExplainInputs, loaded: LoadedModel) -> list[dict[str, Any]]:
        """Overlays, the grid and ``maps.npz``; returns the manifest's ``images`` entries."""
        from interpret import make_grid
        from interpret.tiles import heat_overlay, outline

        names_of = loaded.class_names
        tiles, captions = [], []
        for index, name in enumerate(samples.names):
            p = int(samples.predicted[index])
            label = samples.labels[index]
            truth = f" (true {class_name(names_of, label)})" if label is not None else ""
            tiles.append(samples.photos[index])
            captions.append([name[:24], f"{class_name(names_of, p)} {float(samples.probabilities[index, p]):.2f}{truth}"])
            for method in inputs.methods:
                # the map over a dimmed grey picture, each pixel as opaque as it is relevant; the object outlined
                overlay = heat_overlay(samples.photos[index], results[method][index], inputs.colormap, inputs.alpha)
                if samples.masks is not None:
                    overlay = outline(overlay, samples.masks[index].cpu().numpy() > 0)
                save_image(overlay_file(output_dir, index, name, method), overlay)
                tiles.append(overlay)
                captions.append([method, f"class {class_name(names_of, int(samples.targets[index]))}"])
        note = ("each map scaled per image: colour and opacity grow from its least (0) to its most (1) relevant pixel"
                + ("; white outline: the object" if samples.masks is not None else ""))
        save_grid(output_dir, make_grid(tiles, captions, ncols=1 + len(inputs.methods), min_tile=160,
                                        title=f"{loaded.ckpt.name}: input, then {', '.join(inputs.methods)}\n{note}"))
        save_maps(output_dir, {
            **{map_key(m): a for m, a in results.items()},
            "methods": np.array(inputs.methods),
            "images": np.array(samples.names),
            "targets": samples.targets.numpy(),
            "predicted": samples.predicted.numpy(),
            "probabilities": samples.probabilities.numpy(),
            **({"masks": samples.masks.cpu().numpy()} if samples.masks is not None else {}),
        })
        return [
            {"name": name, "source": samples.sources[i], "label": samples.labels[i],
             "predicted": int(samples.predicted[i]), "probability": float(samples.probabilities[i, int(samples.predicted[i])]),
             "target": int(samples.targets[i])}
            for i, name in enumerate(samples.names)
        ]

    def score(self, output_dir: Path, samples: ClassificationSamples, inputs: ExplainInputs,
              loaded: LoadedModel) -> dict[str, float]:
        """``metrics.csv``: deletion, insertion, max-sensitivity (and localisation with masks); the seconds per method."""
        from interpret.metrics import evaluate_methods

        log.info("Scoring the methods" + (" (with the object masks)" if samples.masks is not None else ""))
        mean, std = loaded.mean, loaded.std
        table = evaluate_methods(
            loaded.model, samples.batch, samples.targets.to(inputs.device), inputs.methods, masks=samples.masks,
            method_kwargs={m: {"mean": mean, "std": std, **inputs.method_kwargs.get(m, {})} for m in inputs.methods},
            mean=mean, std=std, seed=int(inputs.seed or 0), **inputs.metric_kwargs,
        )
        table.to_csv(output_dir / EXPLAIN_METRICS_FILE)
        _print_table(table)
        self.recommendations = [table.recommendations[m] for m in table.metrics]  # the report shows them too
        return {k: round(v, 4) for k, v in table.seconds.items()}

    def features(self, output_dir: Path, samples: ClassificationSamples, inputs: ExplainInputs,
                 loaded: LoadedModel) -> list[str]:
        """The feature maps of each ``features`` layer for every sample; the files written."""
        from interpret import FeatureVisualizer

        visualizer = FeatureVisualizer(loaded.model, mean=loaded.mean, std=loaded.std)
        written = []
        for layer in inputs.features:
            for index, name in enumerate(samples.names):
                path = feature_file(output_dir, index, name, layer)
                path.parent.mkdir(parents=True, exist_ok=True)
                visualizer.plot_feature_maps(samples.batch[index : index + 1], layer, num_features=inputs.num_features,
                                             save_path=path, colormap=inputs.colormap)
                written.append(str(path.relative_to(output_dir)))
        return written

    def manifest(self, samples: ClassificationSamples, inputs: ExplainInputs, loaded: LoadedModel,
                 images: list[dict[str, Any]], runtimes: dict[str, float], metric_seconds: dict[str, float] | None,
                 feature_files: list[str]) -> dict[str, Any]:
        """The manifest's keys after the provenance (same keys and order as ever)."""
        return {
            "methods": inputs.methods,
            "method_kwargs": inputs.method_kwargs,
            "runtime_s": runtimes,
            "input_size": list(loaded.size),
            "normalization": {"mean": list(loaded.mean), "std": list(loaded.std)},
            "class_names": loaded.class_names,
            "images": images,
            "masks": samples.masks is not None,
            "metrics": EXPLAIN_METRICS_FILE if metric_seconds is not None else None,
            "metric_runtime_s": metric_seconds,
            "features": feature_files,
            "recommendations": self.recommendations,
        }
