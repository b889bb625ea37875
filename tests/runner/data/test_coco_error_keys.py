"""COCO folder errors name the config keys that exist: ``data.<split>_annotations`` / ``data.<split>_images``
(issue 21, item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from runner.data import CocoFolderDataModule


def _split(root: Path, name: str, n_images: int = 2) -> tuple[Path, Path]:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n_images):
        Image.new("RGB", (40, 40), (20 * i, 90, 200)).save(folder / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "width": 40, "height": 40})
        annotations.append({"id": 10 + i, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 20, 20]})
    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}))
    return path, folder


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_each_error_names_an_existing_key(tmp_path: Path, split: str) -> None:
    paths = {s: _split(tmp_path, s) for s in ("train", "val", "test")}

    def make(**change: str) -> None:
        args = {f"{s}_{kind}": str(p) for s, (ann, img) in paths.items() for kind, p in (("annotations", ann), ("images", img))}
        args.update(change)
        CocoFolderDataModule(**args, num_workers=0)

    cases = [
        ({f"{split}_annotations": str(tmp_path / "nope.json")}, f"data.{split}_annotations: no such annotations file"),
        ({f"{split}_images": str(tmp_path / "nowhere")}, f"data.{split}_images: image folder"),
    ]
    (tmp_path / "broken.json").write_text("{not json")
    cases.append(({f"{split}_annotations": str(tmp_path / "broken.json")}, f"data.{split}_annotations: .* is not readable JSON"))
    (tmp_path / "empty").mkdir()
    cases.append(({f"{split}_images": str(tmp_path / "empty")}, f"data.{split}_images: 2 image file\\(s\\) listed"))
    for change, message in cases:
        with pytest.raises((FileNotFoundError, ValueError), match=message) as err:
            make(**change)
        text = str(err.value)
        assert f"data.{split}." not in text and not text.startswith(f"data.{split}:")
