"""GradNormMonitor in real (tiny) fits, and its pure norm functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from callbacks import GradNormMonitor
from callbacks.grad_norm import grad_norms, layer_group
from tests.support.callback_fits import TinyData, TinyNet, csv_rows


def test_grad_norms_logged_every_n_steps(trainer_factory, tmp_path: Path) -> None:
    seen: dict[int, float] = {}

    class Probe(TinyNet):
        def on_before_optimizer_step(self, optimizer: Any) -> None:
            grads = [p.grad.flatten() for p in self.parameters() if p.grad is not None]
            seen[self.global_step + 1] = float(torch.cat(grads).norm())  # the step this update completes

    trainer = trainer_factory([GradNormMonitor(log_every_n_steps=2)], limit_train_batches=5, limit_val_batches=0)
    trainer.fit(Probe(), TinyData(n=80))
    rows = [r for r in csv_rows(tmp_path / "csv") if r.get("grad_norm/total")]
    assert [int(r["step"]) for r in rows] == [2, 4]  # steps n, 2n, ... (issue 7 item 9), not 0
    for r in rows:
        assert float(r["grad_norm/total"]) == pytest.approx(seen[int(r["step"])], rel=1e-5)
        groups = [float(r[f"grad_norm/{g}"]) for g in ("conv1", "conv2", "head")]
        assert math.sqrt(sum(g * g for g in groups)) == pytest.approx(float(r["grad_norm/total"]), rel=1e-5)


def test_grad_norm_groups_below_a_shared_prefix() -> None:
    from runner.models.classifier import ImageClassifier

    model = ImageClassifier(backbone="resnet18", num_classes=10, image_size=32)
    cb = GradNormMonitor()
    cb.setup(None, model, "fit")  # type: ignore[arg-type]
    groups = {cb.group_name(n) for n, _ in model.named_parameters()}
    assert {"backbone.layer1", "backbone.layer4", "backbone.fc", "backbone.conv1"} <= groups


@pytest.mark.parametrize("norm_type", [0, -1, "two", None])
def test_grad_norm_bad_norm_type(norm_type: Any) -> None:
    with pytest.raises(ValueError, match="number > 0 or 'inf'"):
        GradNormMonitor(norm_type=norm_type)


def test_grad_norms_per_group_and_total() -> None:
    module = torch.nn.Module()
    module.a = torch.nn.Module()
    module.a.x = torch.nn.Linear(1, 4)
    module.b = torch.nn.Linear(9, 1, bias=False)
    module.unused = torch.nn.Linear(2, 2)  # no .grad: skipped
    module.a.x.weight.grad = torch.full((4, 1), 1.0)
    module.a.x.bias.grad = torch.full((4,), 2.0)
    module.b.weight.grad = torch.ones(1, 9)
    norms = grad_norms(module, 2.0, group_of=lambda n: n.split(".")[0])
    assert set(norms) == {"a", "b", "total"}
    assert float(norms["a"]) == pytest.approx(math.sqrt(4 + 16))
    assert float(norms["b"]) == pytest.approx(3.0)
    assert float(norms["total"]) == pytest.approx(math.sqrt(20 + 9))
    inf = grad_norms(module, math.inf, group_of=lambda n: n.split(".")[0])
    assert float(inf["total"]) == 2.0 and float(inf["b"]) == 1.0
    assert grad_norms(torch.nn.Linear(2, 2), 2.0) == {}


def test_layer_group() -> None:
    assert layer_group("backbone.layer1.0.conv1.weight", "backbone.") == "backbone.layer1"
    assert layer_group("head.weight") == "head"
