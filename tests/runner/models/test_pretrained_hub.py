"""``model.pretrained=true`` through timm's Hugging Face hub path, fed from a cache the test writes (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runner.models.backbone import check_backbone_name
from tests.support.hf_cache import TINY_TAG, write_timm_hub_cache
from tests.support.slurm import run_py

TINY_RUN = (
    "data.image_size=32", "trainer.max_epochs=1", "++trainer.limit_train_batches=1", "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=1", "print_config=false", "report=false", "callbacks.rich_progress_bar=null",
)


# ------------------------------------------------------------------ names and tags
def test_backbone_names_with_and_without_a_tag_are_accepted() -> None:
    for name in ("resnet18", "resnet18.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k", TINY_TAG):
        check_backbone_name(name)


def test_an_unknown_tag_lists_the_architectures_tags() -> None:
    with pytest.raises(ValueError, match=r"model\.backbone: timm has no pretrained tag 'bogus' for 'resnet18'; "
                                         r"its tags: .*resnet18\.a1_in1k"):
        check_backbone_name("resnet18.bogus")


def test_a_misspelt_tagged_name_suggests_tagged_names() -> None:
    with pytest.raises(ValueError, match=r"unknown timm model 'resnt18\.a1_in1k'\. "
                                         r"Closest timm names: .*resnet18\.a1_in1k"):
        check_backbone_name("resnt18.a1_in1k")


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, torch.Tensor]]:
    """A hub cache holding :data:`TINY_TAG`, read by huggingface_hub in this process with ``HF_HUB_OFFLINE``."""
    from huggingface_hub import constants

    state = write_timm_hub_cache(tmp_path / "hf")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf", state


def test_the_detectors_backbone_starts_from_the_hub_weights(offline_hub: tuple[Path, dict[str, torch.Tensor]]) -> None:
    from runner.models import ObjectDetector

    _, saved = offline_hub
    detector = ObjectDetector(backbone=TINY_TAG, pretrained=True, num_classes=3, image_size=64)
    body = detector.detector.backbone.body.state_dict()
    compared = [k for k in body if k in saved]
    assert len(compared) > 20, list(body)[:5]
    for key in compared:
        assert torch.equal(body[key], saved[key]), key
    assert detector.data_config["mean"] == (0.5, 0.5, 0.5)  # test_resnet's pretrained config, not ImageNet's


# ------------------------------------------------------------------ run.py, for real
@pytest.mark.slow
def test_run_py_fine_tunes_from_the_cached_hub_weights(tmp_path: Path) -> None:
    saved = write_timm_hub_cache(tmp_path / "hf", seed=3)
    run_dir = tmp_path / "out" / "run"
    # lr=0: the one training step changes no parameter, so the checkpoint holds the weights the run started from
    proc = run_py("model.pretrained=true", f"model.backbone={TINY_TAG}", "model.optimizer.lr=0", *TINY_RUN,
                  f"hydra.run.dir={run_dir}", out_dir=tmp_path / "out", timeout=300,
                  env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"Loaded pretrained weights {TINY_TAG} from the Hugging Face hub repo timm/{TINY_TAG}" in proc.stdout
    assert "Normalising with the model's mean=[0.5, 0.5, 0.5]" in proc.stdout
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    params = [k for k in saved if not k.startswith("fc.") and not k.endswith(("running_mean", "running_var",
                                                                              "num_batches_tracked"))]
    assert len(params) > 30
    for key in params:  # BatchNorm's running statistics move with the step; parameters do not at lr=0
        assert torch.equal(backbone[key], saved[key]), key
    assert saved["fc.weight"].shape[0] == 1000 and backbone["fc.weight"].shape[0] == 10  # digits: a new head


@pytest.mark.slow
def test_run_py_without_network_or_cache_exits_with_one_line(tmp_path: Path) -> None:
    proc = run_py("model.pretrained=true", f"model.backbone={TINY_TAG}", *TINY_RUN, out_dir=tmp_path / "out",
                  timeout=300, env={"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stdout[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, proc.stdout[-3000:]
    line = lines[0]
    for part in (TINY_TAG, f"timm/{TINY_TAG}", "HF_HUB_OFFLINE=1", "connect once", f"models--timm--{TINY_TAG}",
                 str(tmp_path / "empty" / "hub"), "model.weights_path"):
        assert part in line, (part, line)
