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


# -- The real benchmarks in their own layouts (docs/real-data.md), small images ---------------------------
COCO_CATEGORIES = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]


def _coco_instances(image_ids: list[int], prefix: str = "", width: int = 64, height: int = 48) -> dict:
    """An instances JSON for images ``{prefix}{id:012d}.jpg``: two boxes on each (a medium and a small one)
    but the last image (no objects); ``area`` is a segmentation's area as in COCO (not the box's), and the
    second image's small box is a crowd region."""
    images, annotations = [], []
    for n, iid in enumerate(image_ids):
        images.append({"id": iid, "file_name": f"{prefix}{iid:012d}.jpg", "width": width, "height": height})
        if n == len(image_ids) - 1:
            continue
        objects = [(1, [2.5, 3.0, 36.0, 40.0]), (90 if n % 2 else 18, [30.0, 5.0, 25.5, 12.0])]
        for k, (category_id, (x, y, w, h)) in enumerate(objects):
            annotations.append(
                {
                    "id": 1000 * iid + k,
                    "image_id": iid,
                    "category_id": category_id,
                    "bbox": [x, y, w, h],
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                    "area": w * h * 0.9,
                    "iscrowd": int(n == 1 and k == 1),
                }
            )
    return {"images": images, "annotations": annotations, "categories": COCO_CATEGORIES}


def write_coco_official(root: Path) -> Path:
    """COCO's official layout: ``root/annotations/instances_{val,train}2017.json`` and the images in
    ``root/{val,train}2017/000000000139.jpg ...`` (three images each, the last without objects)."""
    for split, ids in {"val2017": [139, 285, 632], "train2017": [9, 25, 30]}.items():
        data = _coco_instances(ids)
        for im in data["images"]:
            write_png(root / split / im["file_name"], im["width"], im["height"])  # a JPEG (by the suffix)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


REFER_SPLITS = {
    "refcoco": ("unc", ("train", "val", "testA", "testB")),
    "refcoco+": ("unc", ("train", "val", "testA", "testB")),
    "refcocog": ("umd", ("train", "val", "test")),
}


def write_refer_benchmarks(root: Path) -> Path:
    """The refer layout for RefCOCO, RefCOCO+ (``refs(unc).p``) and RefCOCOg (``refs(umd).p``), each with
    ``instances.json``; every split has two refs (three sentences); the images are COCO train2014 names in
    ``root/images/mscoco/images/train2014``."""
    instances = _coco_instances([9, 25, 30, 77], prefix="COCO_train2014_")
    for im in instances["images"]:
        image = root / "images" / "mscoco" / "images" / "train2014" / im["file_name"]
        write_png(image, im["width"], im["height"])
    annotations = [a for a in instances["annotations"] if not a["iscrowd"]]
    names = {c["id"]: c["name"] for c in COCO_CATEGORIES}
    for dataset, (split_by, splits) in REFER_SPLITS.items():
        refs = []
        for split in splits:
            for k in range(2):
                ref_id = len(refs) + 1
                ann = annotations[(ref_id + k) % len(annotations)]
                name = names[ann["category_id"]]
                sentences = [{"sent": f"the {name} {split}", "sent_id": 10 * ref_id}]
                if k == 0:
                    sentences.append({"sent": f"{name} on the left", "sent_id": 10 * ref_id + 1})
                refs.append(
                    {
                        "ref_id": ref_id,
                        "ann_id": ann["id"],
                        "image_id": ann["image_id"],
                        "split": split,
                        "category_id": ann["category_id"],
                        "sentences": sentences,
                    }
                )
        folder = root / dataset
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "instances.json").write_text(json.dumps(instances))
        (folder / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root


def write_pixmo_count_export(root: Path, width: int = 64, height: int = 48) -> Path:
    """PixMo-Count as a local JSONL export: ``root/{train,validation,test}.jsonl``, images in
    ``root/images/<sha256>.jpg``, points in PERCENT of width/height; counts 0, 1 and 3 per split."""
    import hashlib

    points = [
        [],
        [{"x": 50.0, "y": 50.0}],
        [{"x": 12.5, "y": 40.0}, {"x": 80.0, "y": 20.0}, {"x": 33.3, "y": 90.0}],
    ]
    for split in ("train", "validation", "test"):
        records = []
        for n, pts in enumerate(points):
            image = f"images/{hashlib.sha256(f'{split}-{n}'.encode()).hexdigest()}.jpg"
            write_png(root / image, width, height)
            records.append({"image": image, "label": "apple", "count": len(pts), "points": pts})
        write_jsonl(root / f"{split}.jsonl", records)
    return root


def write_page_ocr_pages(root: Path, width: int = 64, height: int = 48) -> Path:
    """PageOCR: ``root/train.jsonl``, one test file per language (``root/test_en.jsonl``,
    ``root/test_zh.jsonl``), page images in ``root/pages/``; texts of 4 words (characters) or more."""
    texts = {
        "train": ["line one\nline two", "a third page here"],
        "test_en": ["the quick brown fox\njumps over the lazy dog", "hello world from page two"],
        "test_zh": ["今天天气很好\n我们去公园", "你好世界"],
    }
    for split, pages in texts.items():
        records = []
        for n, text in enumerate(pages):
            image = f"pages/{split}-p{n + 1}.png"
            write_png(root / image, width, height)
            records.append({"image": image, "text": text})
        write_jsonl(root / f"{split}.jsonl", records)
    return root


# -- Image files in the modes and states real data has (tests/data/test_images.py) ------------------------
def write_grey16_ramp(path: Path, width: int = 256, height: int = 4) -> Path:
    """A 16-bit grey PNG (PIL mode ``I;16``): column x holds ``257 * x``, so its 8-bit value is exactly x."""
    import numpy as np

    ramp = np.tile((np.arange(width, dtype=np.uint32) * 257).astype(np.uint16), (height, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ramp).save(path)
    return path


def write_exif_png(path: Path, orientation: int, width: int = 40, height: int = 20) -> Path:
    """An RGB PNG of ``width x height`` STORED pixels, its 10 left columns white, the rest black, tagged
    with EXIF ``orientation`` (6: shown turned 90 degrees clockwise, the white columns on top)."""
    import numpy as np

    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    return path


def write_truncated_jpeg(path: Path, width: int = 40, height: int = 30) -> Path:
    """A noisy JPEG cut in half: its header reads, its pixels do not decode."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path
