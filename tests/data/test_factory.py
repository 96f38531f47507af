import pytest

from perception_env.data import (
    CocoDetection,
    JsonlDataset,
    PageOcr,
    PixmoCount,
    RefCocoGrounding,
    RenderedTextOCR,
    ShapesCounting,
    ShapesDetection,
    ShapesGrounding,
)
from perception_env.tasks import make_dataset

from .fixtures import write_coco, write_jsonl, write_png, write_refer


@pytest.mark.parametrize(
    "task, cls",
    [
        ("detection", ShapesDetection),
        ("counting", ShapesCounting),
        ("grounding", ShapesGrounding),
        ("ocr", RenderedTextOCR),
    ],
)
def test_synthetic(task, cls):
    ds = make_dataset(task, split="test", difficulty="medium", size=7, seed=3)
    assert isinstance(ds, cls) and len(ds) == 7 and ds.difficulty.name == "medium" and ds.split == "test"
    assert ds[6].sample_id == f"{ds.name}/test/6"


def test_real_sources(tmp_path):
    ann, images = write_coco(tmp_path / "coco")
    assert isinstance(make_dataset("detection", "coco", annotation_file=ann, image_dir=images), CocoDetection)
    write_refer(tmp_path / "refer")
    ref = make_dataset("grounding", "refcoco", split="val", root=tmp_path / "refer")
    assert isinstance(ref, RefCocoGrounding) and len(ref) == 1
    write_png(tmp_path / "p" / "a.png")
    path = write_jsonl(
        tmp_path / "p" / "validation.jsonl", [{"image": "a.png", "label": "x", "count": 0, "points": []}]
    )
    assert isinstance(make_dataset("counting", "pixmo-count", split="val", root=tmp_path / "p"), PixmoCount)
    assert isinstance(make_dataset("counting", "pixmo-count", path=path), PixmoCount)
    ocr = write_jsonl(tmp_path / "p" / "o.jsonl", [{"image": "a.png", "text": "t"}])
    assert isinstance(make_dataset("ocr", "page-ocr", path=ocr), PageOcr)
    assert isinstance(make_dataset("ocr", "jsonl", path=ocr), JsonlDataset)


@pytest.mark.parametrize(
    "task, source, match",
    [
        ("segmentation", "synthetic", "unknown task"),
        ("detection", "imagenet", "unknown source"),
        ("grounding", "coco", "serves the 'detection' task"),
        ("ocr", "pixmo-count", "serves the 'counting'"),
        ("ocr", "jsonl", "needs path"),
        ("detection", "coco", "annotation_file"),
    ],
)
def test_unknown_combinations(task, source, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(task, source)
