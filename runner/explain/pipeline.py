"""Explain a trained checkpoint: ``python explain.py ckpt_path=<run dir or .ckpt>``.

:func:`run` is what ``explain.py`` calls (the failure policy: one line, no directory left);
:func:`explain` is the straight-line pipeline, one named phase a line:

inputs (every key checked) -> checkpoint -> pictures -> model (+ weights, datamodule,
normalisation) -> samples -> maps per method -> overlays, grid, ``maps.npz`` -> metrics
(optional) -> feature maps (optional) -> manifest -> report.

Where classification and detection differ, the :class:`~runner.explain.phases.Phases` of the
model's task (``interpret.task_for(model)``) do the work.
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from runner.errors import full_error_requested, short_message
from runner.explain.checkpoint import find_checkpoint, saved_config_file, sha256_of
from runner.explain.inputs import ExplainInputs, check_inputs
from runner.explain.model import LoadedModel, load_model
from runner.explain.phases import Phases, phases_for
from runner.explain.writer import PACKAGES, write_manifest
from runner.paths import close_log_files
from runner.provenance import git_commit, library_versions

log = logging.getLogger(__name__)

__all__ = ["explain", "run"]

def _seed(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


#: pictures with a longer side above this are reduced on load (a JPEG decoded at 1/2-1/8 scale, then
#: resized): a 10000 x 10000 photo costs tens of MB instead of gigabytes; overlays are drawn on the
#: reduced picture, and the model's input is resized from it as before
PICTURE_MAX_SIDE = 1024


def _pictures(inputs: ExplainInputs) -> list[Image.Image]:
    """The ``images`` files, reduced to :data:`PICTURE_MAX_SIDE` on load, read before the model loads
    (an unreadable file fails in a second)."""
    from interpret import load_image

    pictures = [load_image(p, what="images", max_side=PICTURE_MAX_SIDE) for p in inputs.images]
    for path, picture in zip(inputs.images, pictures, strict=True):
        if "original_size" in picture.info:
            width, height = picture.info["original_size"]
            log.info(f"images: {Path(path).name} is {width}x{height}: reduced to {picture.width}x{picture.height} "
                     f"on load (overlays are drawn on the reduced picture)")
    return pictures


def _provenance(inputs: ExplainInputs, loaded: LoadedModel) -> dict[str, Any]:
    """The manifest's first keys, for every task: checkpoint, code, libraries, seed, device."""
    config = saved_config_file(loaded.run_dir)
    return {
        "checkpoint": {"path": str(loaded.ckpt), "sha256": sha256_of(loaded.ckpt), "run_dir": str(loaded.run_dir),
                       "config": str(config) if config else None, "weights": inputs.weights},
        "git_commit": git_commit(),
        "versions": library_versions(PACKAGES),
        "seed": inputs.seed,
        "device": str(inputs.device),
    }


def _timed(phases: Phases, method: str, samples: Any, inputs: ExplainInputs, loaded: LoadedModel) -> tuple[Any, float]:
    started = time.perf_counter()
    result = phases.explain(method, samples, inputs, loaded)
    if inputs.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = round(time.perf_counter() - started, 4)
    log.info(f"{method}: {seconds:.2f} s for {phases.count(result)}")
    return result, seconds


def explain(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Explain the checkpoint of ``cfg.ckpt_path`` into ``output_dir``; return the manifest."""
    inputs = check_inputs(cfg)
    ckpt = find_checkpoint(inputs.ckpt_path)
    pictures = _pictures(inputs)
    log.info(f"Checkpoint: {ckpt}")
    _seed(inputs.seed)
    loaded = load_model(ckpt, inputs.device, need_samples=not inputs.images, weights=inputs.weights)
    phases = phases_for(loaded.model)
    phases.check(inputs, loaded)
    samples = phases.samples(inputs, loaded, pictures)
    results, runtimes = {}, {}
    for method in inputs.methods:
        results[method], runtimes[method] = _timed(phases, method, samples, inputs, loaded)
    images = phases.write(output_dir, samples, results, inputs, loaded)
    metric_seconds = phases.score(output_dir, samples, inputs, loaded) if inputs.metrics else None
    feature_files = phases.features(output_dir, samples, inputs, loaded) if inputs.features else []
    body = phases.manifest(samples, inputs, loaded, images, runtimes, metric_seconds, feature_files)
    return write_manifest(output_dir, {**_provenance(inputs, loaded), **body})  # and report.html


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of ``explain.py``: explain, print where the files are, or fail in one line.

    Any failure (a missing checkpoint, an unreadable image, an unknown method, ...) prints one
    line ``Error: <what>`` to stderr, removes the output directory Hydra made and exits with
    status 1 (``HYDRA_FULL_ERROR=1`` raises the full traceback instead).
    """
    from hydra.core.hydra_config import HydraConfig

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()
    try:
        manifest = explain(cfg, output_dir)
    except Exception as exc:  # noqa: BLE001 - every failure is reported in one line
        log.debug("".join(traceback.format_exception(exc)))
        close_log_files(output_dir)
        shutil.rmtree(output_dir, ignore_errors=True)
        try:
            output_dir.parent.rmdir()  # outputs/explain/ too, when this run was its only content
        except OSError:
            pass
        if full_error_requested():
            raise
        message = " ".join(short_message(exc).split())
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(1)
    from rich.console import Console

    console = Console(width=160)
    console.print(f"Output dir: {output_dir}")
    console.print(f"Checkpoint: {manifest['checkpoint']['path']}")
    for method, seconds in manifest["runtime_s"].items():
        console.print(f"  {method}: {seconds:.2f} s")
    return manifest
