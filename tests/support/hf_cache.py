"""Hugging Face caches and datasets written by the tests themselves (no network).

:func:`write_timm_hub_cache` lays out ``$HF_HOME/hub`` exactly as huggingface_hub leaves it after
downloading a timm model (``models--timm--<tag>/refs/main`` holding the revision,
``snapshots/<rev>/model.safetensors`` + ``config.json``); :func:`write_hub_dataset` writes a small image
classification dataset as parquet shards in the hub's layout (``<dir>/data/<split>-00000-of-00001.parquet``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

#: a tiny timm model with pretrained weights on the hub (a few thousand parameters)
TINY_TAG = "test_resnet.r160_in1k"
#: the revision the fake cache's ``refs/main`` points at
REVISION = "0123456789abcdef0123456789abcdef01234567"


def write_timm_hub_cache(hf_home: Path, tag: str = TINY_TAG, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of timm model ``tag`` saved into ``hf_home/hub`` as the hub serves them; returns them."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    from tests.support.tiny_models import randomize_batchnorm

    model = timm.create_model(tag, pretrained=False)  # the tag's own head (1000 ImageNet classes)
    randomize_batchnorm(model, seed)  # BatchNorm weights unlike a fresh model's ones and zeros
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    repo = hf_home / "hub" / f"models--timm--{tag}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    save_file(state, str(snapshot / "model.safetensors"))
    cfg = {k: v for k, v in dict(model.pretrained_cfg).items()
           if isinstance(v, (str, int, float, list, tuple, type(None)))}
    (snapshot / "config.json").write_text(json.dumps(
        {"architecture": tag.split(".")[0], "num_classes": model.num_classes, "pretrained_cfg": cfg}, indent=2
    ))
    return state


def write_hub_dataset(root: Path, splits: dict[str, int], classes: tuple[str, ...] = ("circle", "square", "star"),
                      size: int = 24, seed: int = 0) -> Path:
    """``root/data/<split>-00000-of-00001.parquet`` for each ``{split: rows}``: random images, labels by row."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(classes))})
    for split, rows in splits.items():
        labels = [i % len(classes) for i in range(rows)]
        # each class its own mean brightness, so a few steps can learn something
        images = [Image.fromarray(np.clip(rng.normal(60 + 70 * y, 30, (size, size, 3)), 0, 255).astype(np.uint8))
                  for y in labels]
        table = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root
