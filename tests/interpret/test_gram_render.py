"""The Gram matrix picture: heatmap, colour bar and, for rows sorted by class, the class bands."""

from __future__ import annotations

import numpy as np
import torch

from interpret.class_structure import label_order
from interpret.gram_render import class_name, render_gram
from interpret.render import class_colour
from tests.support.gram_classes import band_runs, expected_runs


def test_render_gram_with_labels_draws_a_band_of_each_class_colour_along_top_and_left() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (40,), generator=g)
    labels[:3] = torch.tensor([0, 3, 5])  # every class present
    order = label_order(labels)
    gram = torch.eye(40)[order][:, order] * 2 - 1
    sorted_labels = labels[order]
    names = ["plane", "car", "bird", "cat", "deer", "dog"]
    img = render_gram(gram, "step 7\nsorted by class", labels=sorted_labels, class_names=names)
    want = expected_runs(labels.tolist(), 40)  # cell 9 px: each class's run is 9 px per sample
    assert [c for c, _ in want] == [class_colour(k) for k in range(6)]
    assert band_runs(img, axis=0) == want
    assert band_runs(img, axis=1) == want
    plain = render_gram(gram, "step 7")
    assert band_runs(plain) == []  # no labels: no band, the picture as before
    assert img.shape[0] > plain.shape[0] and img.shape[1] >= plain.shape[1]  # room for the names and bands
    # text is never clipped: the outermost column and row stay white
    for image in (img, plain):
        assert (image[:, 0] == 255).all() and (image[:, -1] == 255).all()
        assert (image[0] == 255).all() and (image[-1] == 255).all()


def test_render_gram_long_names_widen_the_margin_and_one_class_has_one_band() -> None:
    labels = torch.tensor([3] * 5)
    img = render_gram(torch.ones(5, 5), labels=labels, class_names={3: "a very long class name indeed, cut"})
    assert band_runs(img) == [(class_colour(3), 5 * (384 // 5))]
    assert (img[:, 0] == 255).all()
    assert img.shape[1] < 800  # names are cut to a bounded width


def test_class_name_from_a_sequence_a_mapping_or_the_number() -> None:
    assert class_name(1, ["a", "b"]) == "b"
    assert class_name(5, ["a", "b"]) == "5"
    assert class_name(2, {2: "two"}) == "two"
    assert class_name(3, None) == "3"
    assert np.asarray(render_gram(torch.zeros(3, 3), labels=torch.tensor([0, 1, 1]))).dtype == np.uint8
