"""Small dataset files written into a temporary folder (nothing binary is committed)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from PIL import Image


def write_png(path: Path, width: int = 40, height: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (200, 100, 50)).save(path)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def coco_dict() -> dict:
    """Three images (one without annotations), categories with COCO's non-contiguous ids 1 and 90."""
    return {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "b.png", "width": 40, "height": 30},
            {"id": 9, "file_name": "empty.png", "width": 40, "height": 30},
        ],
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 1, "name": "person"},
            {"id": 18, "name": "dog"},
        ],
        "annotations": [
            {"id": 100, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 5], "iscrowd": 0, "area": 50},
            {"id": 101, "image_id": 7, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 1, "area": 400},
            {"id": 102, "image_id": 3, "category_id": 18, "bbox": [0, 0, 40, 30], "iscrowd": 0, "area": 1200},
        ],
    }


def write_coco(root: Path, data: dict | None = None) -> tuple[Path, Path]:
    images = root / "images"
    for name in ("a.png", "b.png", "empty.png"):
        write_png(images / name)
    ann = root / "instances.json"
    ann.write_text(json.dumps(coco_dict() if data is None else data))
    return ann, images


def refs_list() -> list:
    return [
        {
            "ref_id": 1,
            "ann_id": 100,
            "image_id": 7,
            "split": "train",
            "category_id": 90,
            "sentences": [
                {"sent": "the toothbrush", "sent_id": 11},
                {"sent": "brush on left", "sent_id": 12},
            ],
        },
        {
            "ref_id": 2,
            "ann_id": 102,
            "image_id": 3,
            "split": "val",
            "category_id": 18,
            "sentences": [{"sent": "dog", "sent_id": 21}],
        },
        {
            "ref_id": 3,
            "ann_id": 101,
            "image_id": 7,
            "split": "testA",
            "category_id": 1,
            "sentences": [{"sent": "person in middle", "sent_id": 31}],
        },
    ]


def write_refer(
    root: Path, refs: list | None = None, dataset: str = "refcoco", as_json: bool = False
) -> Path:
    """The refer layout: root/refcoco/refs(unc).p + instances.json, images in root/images/mscoco/images/train2014."""
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    images = root / "images" / "mscoco" / "images" / "train2014"
    for name in ("a.png", "b.png", "empty.png"):
        write_png(images / name)
    (folder / "instances.json").write_text(json.dumps(coco_dict()))
    refs = refs_list() if refs is None else refs
    if as_json:
        (folder / "refs(unc).json").write_text(json.dumps(refs))
    else:
        (folder / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return folder
