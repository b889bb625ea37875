"""``explain.py`` on a detection run: per image, per detection maps (``interpret.explain_detection``).

Writes, in the output directory:

- ``detections/<NN>_<image>.png``: the image with every detection's box, label and score;
- ``overlays/<NN>_<image>_<method>_<KK>.png``: detection ``KK``'s heatmap with its box;
- ``grid.png``: a row per image: its detections, then per method the per-pixel maximum of its maps;
- ``maps.npz``: ``map_<method>_<NN>`` ``(N_i, H, W)`` per image, ``boxes_<NN>``, ``labels_<NN>``, ``scores_<NN>``;
- ``metrics.csv`` (``metrics=true``): the pointing game on boxes (the map's maximum inside the
  detection's box, :func:`interpret.metrics.boxes.pointing_game_on_boxes`) of each method over the
  run's validation images (``metric_images`` of them, null: all), with the random-map baseline beside it;
- ``manifest.json`` (``"task": "detection"``) and ``report.html``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from interpret.tasks import Task
from runner.artifacts import DETECTIONS_DIR, EXPLAIN_METRICS_FILE, OVERLAYS_DIR
from runner.explain.inputs import ExplainInputs
from runner.explain.model import LoadedModel
from runner.explain.writer import detection_file, map_key, overlay_file, save_grid, save_image, save_maps, write_metric_rows

log = logging.getLogger(__name__)

__all__ = ["DetectionSamples", "DetectionPhases"]


@dataclass
class DetectionSamples:
    """The images explained (pixels or pictures), their names and sources, and the ground truth when known."""

    images: list[Any]
    names: list[str]
    sources: list[str]
    truths: list[dict[str, torch.Tensor] | None]


def _class_name(names: list[str], label: int) -> str:
    """A detection's class: its name, else ``class <label>`` (a bare number would read as a score)."""
    from interpret.tasks import class_name

    return class_name(names, label) if 0 <= label < len(names) else f"class {label}"


def _print_rows(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Explanation quality: pointing game on boxes, higher is better (mean [95% interval], n detections)")
    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    table.add_column("method")
    for metric in metrics:
        table.add_column(metric + (" (all detections)" if metric == "box_pointing_game" else " (true positives)"))
    for method in dict.fromkeys(row["method"] for row in rows):
        cells = {row["metric"]: row for row in rows if row["method"] == method}
        table.add_row(method, *(f"{cells[m]['mean']:.3f} [{cells[m]['ci_low']:.3f}, {cells[m]['ci_high']:.3f}] n={cells[m]['n']}"
                                for m in metrics), style="dim" if cells[metrics[0]]["baseline"] else None)
    Console(width=160).print(table)


class DetectionPhases:
    """The detection phases of the explain pipeline (see the module docstring)."""

    name = "detection"

    def __init__(self, task: Task) -> None:
        """``task``: ``interpret.task_for(model)``, what knows the task's CAM layer and class names."""
        self.task = task

    def check(self, inputs: ExplainInputs, loaded: LoadedModel) -> None:
        """Feature maps are drawn for classifiers only."""
        if inputs.features:
            raise ValueError("features: feature maps are drawn for classification checkpoints only; leave features empty")

    def method_kwargs(self, method: str, inputs: ExplainInputs, loaded: LoadedModel) -> dict[str, Any]:
        """``method``'s keywords; the CAMs default to the task's CAM layer (``ObjectDetector.cam_layer``)."""
        kwargs = dict(inputs.method_kwargs.get(method, {}))
        if kwargs.get("target_layer") is None:
            layer = self.task.cam_layer(loaded.model, method)
            if layer is not None:
                kwargs["target_layer"] = layer
        return kwargs

    def samples(self, inputs: ExplainInputs, loaded: LoadedModel, pictures: list[Image.Image]) -> DetectionSamples:
        """The given pictures, else the run's sample images with their ground truth."""
        if inputs.images:
            samples = DetectionSamples([p.convert("RGB") for p in pictures], [Path(p).name for p in inputs.images],
                                       list(inputs.images), [None] * len(pictures))
        else:
            batch, truths = loaded.datamodule.sample_images(inputs.num_samples)
            images = list(batch.unbind(0))
            samples = DetectionSamples(images, [f"sample_{i:02d}" for i in range(len(images))], ["sample"] * len(images),
                                       list(truths))
        log.info(f"Explaining the detections of {len(samples.images)} image(s) with {', '.join(inputs.methods)}")
        return samples

    def explain(self, method: str, samples: DetectionSamples, inputs: ExplainInputs, loaded: LoadedModel) -> list[Any]:
        """One ``DetectionExplanation`` per image: a map per detection above the threshold."""
        from interpret import explain_detection

        kwargs = self.method_kwargs(method, inputs, loaded)
        with warnings.catch_warnings():  # "no detection above the threshold": the image just has none
            warnings.simplefilter("ignore", UserWarning)
            return [explain_detection(loaded.model, image, method=method, detection_threshold=inputs.detection_threshold,
                                      max_detections=inputs.max_detections, **kwargs) for image in samples.images]

    def count(self, result: list[Any]) -> str:
        """What one method explained, for the log."""
        return f"{sum(len(r) for r in result)} detection(s) in {len(result)} image(s)"

    def write(self, output_dir: Path, samples: DetectionSamples, results: dict[str, list[Any]],
              inputs: ExplainInputs, loaded: LoadedModel) -> list[dict[str, Any]]:
        """Detections, overlays, the grid and ``maps.npz``; returns the manifest's ``images`` entries."""
        from interpret import make_grid
        from interpret.render import class_colour, draw_boxes, upscale
        from interpret.tiles import OUTLINE_COLOUR, heat_overlay, legend_strip

        names_of = loaded.class_names
        alpha, colormap = inputs.alpha, inputs.colormap
        tiles, captions, arrays, entries = [], [], {}, []
        for index, (name, base) in enumerate(zip(samples.names, results[inputs.methods[0]], strict=True)):
            photo = upscale(np.ascontiguousarray(base.image), 160)
            scale = photo.shape[0] / base.image.shape[0]

            def scaled(result: Any) -> list[tuple[float, ...]]:
                return [tuple(float(v) * scale for v in box) for box in result.boxes]

            labels = [f"{_class_name(names_of, int(lab))} {float(s):.2f}" for lab, s in zip(base.labels, base.scores)]
            truth = samples.truths[index]
            true_boxes = [] if not truth else [tuple(float(v) * scale for v in box) for box in truth["boxes"]]
            # ground truth dashed white under the detections, each in its class's colour on a solid label
            boxed = draw_boxes(photo, true_boxes, dashed=True, colours=[OUTLINE_COLOUR]) if true_boxes else photo
            boxed = draw_boxes(boxed, scaled(base), labels, colours=[class_colour(int(lab)) for lab in base.labels])
            legend = [(_class_name(names_of, int(lab)), class_colour(int(lab))) for lab in dict.fromkeys(base.labels.tolist())]
            legend += [("ground truth", OUTLINE_COLOUR)] if truth else []
            tiles.append(boxed)
            if legend:
                boxed = np.concatenate([boxed, legend_strip(legend, boxed.shape[1], dashed=("ground truth",))], axis=0)
            save_image(detection_file(output_dir, index, name), boxed)
            captions.append([name[:24], f"{len(base)} detection(s)" + (f", {len(truth['boxes'])} true" if truth else "")])
            arrays[f"boxes_{index:02d}"] = base.boxes.numpy()
            arrays[f"labels_{index:02d}"] = base.labels.numpy()
            arrays[f"scores_{index:02d}"] = base.scores.numpy()
            overlays = []
            for method in inputs.methods:
                result = results[method][index]
                arrays[map_key(method, index)] = result.maps.numpy()
                for k in range(len(result)):
                    heat = heat_overlay(photo, result.maps[k].numpy(), colormap, alpha)
                    label = f"{_class_name(names_of, int(result.labels[k]))} {float(result.scores[k]):.2f}"
                    path = save_image(overlay_file(output_dir, index, name, method, k),
                                      draw_boxes(heat, [scaled(result)[k]], [label],
                                                 colours=[class_colour(int(result.labels[k]))]))
                    overlays.append(str(path.relative_to(output_dir)))
                combined = heat_overlay(photo, result.combined.numpy(), colormap, alpha)
                tiles.append(draw_boxes(combined, scaled(result), colours=[class_colour(int(v)) for v in result.labels]))
                captions.append([method, f"{len(result)} map(s)"])
            entries.append({
                "name": name, "source": samples.sources[index],
                "true_objects": int(len(truth["boxes"])) if truth else None,
                "detections": [{"box": [round(float(v), 2) for v in box], "label": int(lab),
                                "class": _class_name(names_of, int(lab)), "score": round(float(s), 4)}
                               for box, lab, s in zip(base.boxes, base.labels, base.scores)],
                "overlays": overlays,
            })
        for folder in (OVERLAYS_DIR, DETECTIONS_DIR):  # there even when nothing was detected
            (output_dir / folder).mkdir(parents=True, exist_ok=True)
        save_grid(output_dir, make_grid(tiles, captions, ncols=1 + len(inputs.methods), min_tile=128,
                                        title=f"{loaded.ckpt.name}: detections, then {', '.join(inputs.methods)} "
                                              "(max over detections)"))
        save_maps(output_dir, {"methods": np.array(inputs.methods), "images": np.array(samples.names), **arrays})
        return entries

    def score(self, output_dir: Path, samples: DetectionSamples, inputs: ExplainInputs,
              loaded: LoadedModel) -> dict[str, float]:
        """``metrics.csv``: the pointing game on boxes over the run's validation images; the seconds per method."""
        from interpret.metrics.boxes import pointing_game_on_boxes

        datamodule = loaded.datamodule
        if datamodule is None or getattr(datamodule, "val_set", None) is None and not hasattr(datamodule, "setup"):
            raise ValueError("metrics=true on a detection run needs the run's datamodule (its validation set)")
        datamodule.setup("fit")
        limit = inputs.metric_images
        count = len(datamodule.val_set) if limit is None else min(limit, len(datamodule.val_set))
        items = [datamodule.val_set[i] for i in range(count)]
        log.info(f"Scoring the methods: pointing game on boxes over {count} validation image(s)")
        rows, seconds = pointing_game_on_boxes(
            loaded.model, [image for image, _ in items], inputs.methods,
            {m: self.method_kwargs(m, inputs, loaded) for m in inputs.methods},
            inputs.detection_threshold, inputs.max_detections, seed=int(inputs.seed or 0),
            n_bootstrap=int(inputs.metric_kwargs.get("n_bootstrap", 1000)), targets=[target for _, target in items],
        )
        write_metric_rows(output_dir, rows)
        _print_rows(rows)
        return seconds

    def features(self, output_dir: Path, samples: DetectionSamples, inputs: ExplainInputs,
                 loaded: LoadedModel) -> list[str]:
        """None: :meth:`check` refuses ``features`` on a detector."""
        return []

    def manifest(self, samples: DetectionSamples, inputs: ExplainInputs, loaded: LoadedModel,
                 images: list[dict[str, Any]], runtimes: dict[str, float], metric_seconds: dict[str, float] | None,
                 feature_files: list[str]) -> dict[str, Any]:
        """The manifest's keys after the provenance (same keys and order as ever)."""
        return {
            "input_size": list(loaded.size),
            "normalization": {"mean": list(loaded.mean), "std": list(loaded.std)},
            "task": "detection",
            "methods": inputs.methods,
            "method_kwargs": inputs.method_kwargs,
            "runtime_s": runtimes,
            "detection_threshold": inputs.detection_threshold,
            "max_detections": inputs.max_detections,
            "class_names": loaded.class_names,
            "images": images,
            "metrics": EXPLAIN_METRICS_FILE if metric_seconds is not None else None,
            "metric_runtime_s": metric_seconds,
            "features": feature_files,
        }
