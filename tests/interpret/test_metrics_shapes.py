"""On the shapes data (runner.data) with a briefly trained CNN, GradCAM beats the random map."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interpret.metrics import bootstrap_interval, evaluate_methods
from runner.data import ShapesDataModule


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


@pytest.fixture(scope="module")
def trained_on_shapes() -> tuple[nn.Module, ShapesDataModule]:
    """A small CNN trained for about 30 s on 32 px shapes (about 0.8 validation accuracy, chance 0.25)."""
    torch.manual_seed(0)
    data = ShapesDataModule(
        num_train=2000, num_val=96, num_test=1, image_size=32, seed=0, mean=(0.5,) * 3, std=(0.25,) * 3,
        min_scale=0.16, max_scale=0.28,  # small objects: pointing at one is far from chance
    )
    data.setup("fit")
    x, y = data.train_set.tensors
    model = nn.Sequential(
        _block(3, 16), nn.MaxPool2d(2), _block(16, 32), _block(32, 48, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 4),
    )
    epochs, batch = 20, 50
    optimizer = torch.optim.AdamW(model.parameters(), 1e-2, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, total_steps=epochs * (len(x) // batch))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is several times faster on a busy machine
    try:
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(x))
            for start in range(0, len(x) - batch + 1, batch):
                index = order[start : start + batch]
                xb = torch.rot90(x[index], int(torch.randint(4, (1,))), (2, 3))  # the classes are rotation-free
                xb = xb.flip(-1) if torch.rand(1) < 0.5 else xb
                loss = nn.functional.cross_entropy(model(xb), y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), data


@pytest.mark.slow
def test_gradcam_beats_the_random_map_on_shapes(trained_on_shapes) -> None:
    model, data = trained_on_shapes
    images, labels = data.sample_images(96)
    masks = data.sample_masks(96)
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean()
    assert accuracy >= 0.6, f"the model did not learn the shapes (val accuracy {accuracy:.2f}, chance 0.25)"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = evaluate_methods(
            model, images, labels, {"gradcam": "gradcam"}, masks=masks,
            metrics=["deletion", "insertion", "pointing_game", "energy_in_mask"],
            method_kwargs={"gradcam": {"target_layer": "3"}}, n_steps=64, n_bootstrap=1000,
        )
    finally:
        torch.set_num_threads(threads)
    print(table)
    # paired over the same images: the 95% interval of the mean difference excludes 0
    for metric, sign in (("deletion", -1.0), ("insertion", 1.0), ("pointing_game", 1.0), ("energy_in_mask", 1.0)):
        difference = sign * (table.values[("gradcam", metric)] - table.values[("random", metric)])
        summary = bootstrap_interval(difference, n_bootstrap=1000)
        assert summary.low > 0, (metric, summary)
    assert table.summaries[("gradcam", "pointing_game")].mean >= 0.7
    for metric in ("deletion", "insertion", "pointing_game"):
        assert "clearly better than the random map" in table.recommendations[metric], table.recommendations[metric]
