import json
import pickle

import numpy as np
import pytest

from perception_env.data import (
    CocoDetection,
    DatasetFormatError,
    JsonlDataset,
    PageOcr,
    PixmoCount,
    RefCocoGrounding,
)
from perception_env.data.loaders.errors import DroppedEntriesWarning
from perception_env.data.loaders.refcoco import load_refs
from perception_env.tasks import make_dataset

from .fixtures import (
    coco_dict,
    refs_list,
    write_coco,
    write_coco_official,
    write_jsonl,
    write_page_ocr_pages,
    write_pixmo_count_export,
    write_png,
    write_refer,
)


# -- COCO ------------------------------------------------------------------------------------------
def test_coco_boxes_labels_and_noncontiguous_ids(tmp_path):
    ann, images = write_coco(tmp_path)
    ds = CocoDetection(ann, images)
    assert ds.categories == ("person", "dog", "toothbrush")  # ascending category id: 1, 18, 90
    assert ds.name_to_category_id["toothbrush"] == 90 and ds.category_id_to_name[90] == "toothbrush"
    assert len(ds) == 3 and [ds[i].meta["image_id"] for i in range(3)] == [3, 7, 9]
    s = ds[1]
    np.testing.assert_array_equal(s.boxes, [[1, 2, 11, 7], [5, 5, 25, 25]])  # xywh -> xyxy
    assert s.labels == ("toothbrush", "person") and s.iscrowd == (False, True)
    assert s.meta["category_ids"] == [90, 1] and s.meta["file_name"] == "a.png"
    assert (s.width, s.height) == (40, 30) and s.image is None and s.load_image().shape == (30, 40, 3)
    assert ds[2].boxes.shape == (0, 4) and ds[2].labels == ()
    with pytest.warns(DroppedEntriesWarning):
        assert len(CocoDetection(ann, images, skip_empty=True)) == 2
    assert set(ds.coco.getCatIds()) == {1, 18, 90} and ds.coco.getAnnIds(imgIds=[7]) == [100, 101]
    with pytest.raises(IndexError):
        ds[-1]


@pytest.mark.parametrize(
    "mutate, entry, problem",
    [
        (lambda d: d["annotations"][0].update(category_id=91), "annotation 100", "unknown category_id 91"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, -3, 4]), "annotation 101", "negative size"),
        (lambda d: d["annotations"][2].update(bbox=[1, float("nan"), 3, 4]), "annotation 102", "not finite"),
        (lambda d: d["annotations"][2].update(bbox=[1, 2, 3]), "annotation 102", "4 numbers"),
        (lambda d: d["annotations"][0].pop("image_id"), "annotation 100", "missing field 'image_id'"),
        (lambda d: d["annotations"][0].update(image_id=5), "annotation 100", "unknown image_id 5"),
        (lambda d: d["images"][1].update(width="40"), "image 3", "'width' must be int"),
        (lambda d: d["categories"].append({"id": 2, "name": "dog"}), "category 2", "duplicate"),
    ],
)
def test_coco_malformed(tmp_path, mutate, entry, problem):
    data = coco_dict()
    mutate(data)
    ann, images = write_coco(tmp_path, data)
    with pytest.raises(DatasetFormatError) as e:
        CocoDetection(ann, images)
    assert str(ann) in str(e.value) and entry in str(e.value) and problem in str(e.value)
    assert isinstance(e.value, ValueError)


def test_coco_invalid_json_and_missing_image(tmp_path):
    ann, images = write_coco(tmp_path)
    (images / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        CocoDetection(ann, images)
    ann.write_text('{"images": [}')
    with pytest.raises(DatasetFormatError, match="instances.json, line 1: invalid JSON"):
        CocoDetection(ann, images)


# -- RefCOCO ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_json", [False, True])
def test_refcoco_refer_layout(tmp_path, as_json):
    write_refer(tmp_path, as_json=as_json)
    ds = RefCocoGrounding.from_root(tmp_path, "refcoco", split="train")
    assert len(ds) == 2 and ds.name == "refcoco-train"
    s = ds[1]
    assert s.query == "brush on left" and s.labels == ("toothbrush",)
    np.testing.assert_array_equal(s.boxes, [[1, 2, 11, 7]])
    assert s.meta == {
        "ref_id": 1,
        "ann_id": 100,
        "image_id": 7,
        "sent_id": 12,
        "category_id": 90,
        "file_name": "a.png",
    }
    assert s.load_image().shape == (30, 40, 3)
    assert [ds.query for ds in RefCocoGrounding.from_root(tmp_path, split="testA")] == ["person in middle"]
    with pytest.raises(ValueError, match="split"):
        RefCocoGrounding.from_root(tmp_path, split="nope")


def test_refcoco_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(DatasetFormatError, match=r"builtins.print is not allowed"):
        load_refs(path)
    path.write_bytes(pickle.dumps([{"a": {1, 2}, "b": b"x", "c": (1.5, None)}], protocol=2))
    assert load_refs(path) == [{"a": {1, 2}, "b": b"x", "c": (1.5, None)}]


@pytest.mark.parametrize(
    "mutate, entry, problem",
    [
        (lambda r: r[0].update(ann_id=999), "ref 1", "ann_id 999"),
        (lambda r: r[1].update(image_id=7), "ref 2", "differs"),
        (lambda r: r[2].pop("sentences"), "ref 3", "missing field 'sentences'"),
        (lambda r: r[0]["sentences"].append({"raw": "no sent"}), "ref 1, sentence 2", "missing field 'sent'"),
    ],
)
def test_refcoco_malformed(tmp_path, mutate, entry, problem):
    refs = refs_list()
    mutate(refs)
    folder = write_refer(tmp_path, refs)
    with pytest.raises(DatasetFormatError) as e:
        RefCocoGrounding.from_root(tmp_path)
    assert str(folder / "refs(unc).p") in str(e.value) and entry in str(e.value) and problem in str(e.value)


def test_refcoco_missing_image(tmp_path):
    write_refer(tmp_path)
    (tmp_path / "images" / "mscoco" / "images" / "train2014" / "b.png").unlink()
    assert len(RefCocoGrounding.from_root(tmp_path, split="train")) == 2  # b.png is only used by val
    with pytest.raises(FileNotFoundError, match="b.png"):
        RefCocoGrounding.from_root(tmp_path, split="val")


# -- PixMo-Count ------------------------------------------------------------------------------------
def test_pixmo_percent_points_become_pixels(tmp_path):
    write_png(tmp_path / "images" / "p.png", 200, 100)
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "image": "images/p.png",
                "label": "apple",
                "count": 2,
                "points": [{"x": 50, "y": 50}, {"x": 10, "y": 100}],
            },
            "",
            {"image": "images/p.png", "label": "pear", "count": 1, "points": {"x": [25.0], "y": [20.0]}},
            {"image": "images/p.png", "label": "plum", "count": 0, "points": []},
        ],
    )
    ds = PixmoCount.from_root(tmp_path, "train")
    assert len(ds) == 3 and ds.categories == ()
    s = ds[0]
    np.testing.assert_allclose(s.points, [[100, 50], [20, 100]])
    assert (s.query, s.count, s.width, s.height, s.meta["line"]) == ("apple", 2, 200, 100, 1)
    np.testing.assert_allclose(ds[1].points, [[50, 20]])
    assert ds[1].meta["line"] == 3 and ds[2].count == 0 and ds[2].points.shape == (0, 2)
    assert PixmoCount(path).name == "pixmo-count"


@pytest.mark.parametrize(
    "record, problem",
    [
        ({"label": "a", "count": 1, "points": [{"x": 1, "y": 1}]}, "missing field 'image'"),
        ({"image": "p.png", "count": 1, "points": [{"x": 1, "y": 1}]}, "missing field 'label'"),
        ({"image": "p.png", "label": "a", "count": 2, "points": [{"x": 1, "y": 1}]}, "count 2 differs"),
        ({"image": "p.png", "label": "a", "count": 1, "points": [{"x": 150, "y": 1}]}, "outside 0-100"),
        ({"image": "p.png", "label": "a", "count": "1", "points": []}, "'count' must be int"),
        ({"image": "p.png", "label": "a", "count": 1, "points": [{"x": None, "y": 1}]}, "must be a number"),
    ],
)
def test_pixmo_malformed(tmp_path, record, problem):
    write_png(tmp_path / "p.png")
    ok = {"image": "p.png", "label": "a", "count": 0, "points": []}
    path = write_jsonl(tmp_path / "x.jsonl", [ok, ok, record])
    with pytest.raises(DatasetFormatError) as e:
        PixmoCount(path)
    assert f"{path}, line 3: " in str(e.value) and problem in str(e.value)


# -- PageOCR ---------------------------------------------------------------------------------------
def test_page_ocr(tmp_path):
    write_png(tmp_path / "pages" / "p1.png", 64, 48)
    path = write_jsonl(tmp_path / "test.jsonl", [{"image": "pages/p1.png", "text": "hello\nworld"}])
    s = PageOcr.from_root(tmp_path, "test")[0]
    assert (s.text, s.width, s.height) == ("hello\nworld", 64, 48) and s.image_path.endswith("p1.png")
    write_jsonl(path, [{"image": "pages/p1.png", "text": 3}])
    with pytest.raises(DatasetFormatError, match=r"test.jsonl, line 1: field 'text' must be str"):
        PageOcr(path)
    write_jsonl(path, [{"image": "pages/missing.png", "text": "x"}])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        PageOcr(path)


# -- generic JSONL ---------------------------------------------------------------------------------
def test_jsonl_all_tasks(tmp_path):
    img = write_png(tmp_path / "a.png", 40, 30)
    det = write_jsonl(
        tmp_path / "det.jsonl",
        [
            {"image": "a.png", "boxes": [[1, 2, 10, 20]], "labels": ["zebra"]},
            {
                "image": str(img),
                "boxes": [[0, 0, 5, 5], [3, 3, 9, 9]],
                "labels": ["ant", "zebra"],
                "iscrowd": [0, 1],
            },
        ],
    )
    ds = JsonlDataset(det, "detection")
    assert ds.categories == ("ant", "zebra") and ds[1].iscrowd == (False, True) and ds.name == "det"
    np.testing.assert_array_equal(ds[0].boxes, [[1, 2, 10, 20]])
    cnt = write_jsonl(
        tmp_path / "cnt.jsonl",
        [
            {"image": "a.png", "query": "dot", "points": [[1, 1], [2, 2]]},
            {"image": "a.png", "query": "dot", "count": 5, "width": 40, "height": 30},  # checked: the file's
        ],
    )
    c = JsonlDataset(cnt, "counting")
    assert (c[0].count, len(c[0].points), c[1].count, len(c[1].points), c[1].width) == (2, 2, 5, 0, 40)
    grd = write_jsonl(
        tmp_path / "g.jsonl", [{"image": "a.png", "expression": "the thing", "box": [1, 1, 4, 4]}]
    )
    g = JsonlDataset(grd, "grounding")[0]
    assert g.query == "the thing" and g.boxes.shape == (1, 4)
    ocr = write_jsonl(tmp_path / "o.jsonl", [{"image": "a.png", "text": "abc"}])
    assert JsonlDataset(ocr, "ocr")[0].text == "abc"
    with pytest.raises(ValueError, match="no JSONL schema .segmentation.; one of"):
        JsonlDataset(ocr, "segmentation")


@pytest.mark.parametrize(
    "task, record, problem",
    [
        ("detection", {"image": "a.png", "boxes": [[10, 2, 5, 20]], "labels": ["x"]}, "x2 < x1"),
        ("detection", {"image": "a.png", "boxes": [[1, 2, 5, 20]], "labels": []}, "1 boxes but 0 labels"),
        (
            "detection",
            {"image": "a.png", "boxes": [[1, 2, 500, 20]], "labels": ["x"]},
            "outside the 40x30 image",
        ),
        ("detection", {"image": "a.png", "boxes": [[1, 2, True, 20]], "labels": ["x"]}, "must be a number"),
        ("counting", {"image": "a.png", "query": "dot"}, "needs 'points' or 'count'"),
        ("counting", {"image": "a.png", "query": "dot", "points": [[1, 2, 3]]}, "points[0] must be [x, y]"),
        ("grounding", {"image": "a.png", "expression": "it", "box": [1, 2, float("inf"), 4]}, "not finite"),
        ("grounding", {"image": "a.png", "box": [1, 2, 3, 4]}, "missing field 'expression'"),
        ("ocr", '{"image": "a.png", "text": ', "invalid JSON"),
        ("ocr", "[1, 2]", "expected a JSON object"),
    ],
)
def test_jsonl_malformed(tmp_path, task, record, problem):
    write_png(tmp_path / "a.png", 40, 30)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + (record if isinstance(record, str) else json.dumps(record)) + "\n")
    with pytest.raises(DatasetFormatError) as e:
        JsonlDataset(path, task)
    assert f"{path}, line 2: " in str(e.value) and problem in str(e.value)


def test_jsonl_unreadable_image(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    path = write_jsonl(tmp_path / "o.jsonl", [{"image": "a.png", "text": "t"}])
    with pytest.raises(DatasetFormatError, match=r"o.jsonl, line 1: cannot read image"):
        JsonlDataset(path, "ocr")


def test_jsonl_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        JsonlDataset(tmp_path / "nope.jsonl", "ocr")


# -- every loader: a missing image fails at load time, naming its full path and who referenced it ----
def _coco_missing(tmp_path):
    ann, images = write_coco(tmp_path)
    return lambda: CocoDetection(ann, images), images / "b.png", ann, "image 3"


def _refcoco_missing(tmp_path):
    folder = write_refer(tmp_path)
    images = tmp_path / "images" / "mscoco" / "images" / "train2014"
    load = lambda: RefCocoGrounding.from_root(tmp_path, split="val")  # noqa: E731
    return load, images / "b.png", folder / "instances.json", "image 3"


def _pixmo_missing(tmp_path):
    write_png(tmp_path / "p.png")
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"image": "p.png", "label": "a", "count": 0, "points": []},
            {"image": "b.png", "label": "a", "count": 0, "points": []},
        ],
    )
    return lambda: PixmoCount(path), tmp_path / "b.png", path, "line 2"


def _page_ocr_missing(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"image": "pages/b.png", "text": "x"}])
    return lambda: PageOcr(path), tmp_path / "pages" / "b.png", path, "line 1"


def _jsonl_missing(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"image": "b.png", "expression": "it", "box": [1, 1, 4, 4]}])
    return lambda: JsonlDataset(path, "grounding"), tmp_path / "b.png", path, "line 1"


@pytest.mark.parametrize(
    "setup", [_coco_missing, _refcoco_missing, _pixmo_missing, _page_ocr_missing, _jsonl_missing]
)
def test_missing_image_names_the_path(tmp_path, setup):
    load, missing, referenced_by, entry = setup(tmp_path)
    missing.unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError) as e:
        load()
    assert str(missing) in str(e.value) and str(referenced_by) in str(e.value) and entry in str(e.value)


# -- declared sizes and boxes are checked against the files at load time --------------------------------
def test_coco_declared_size_must_be_the_files(tmp_path):
    data = coco_dict()
    data["images"][1].update(width=80, height=60)  # b.png is 40x30
    ann, images = write_coco(tmp_path, data)
    with pytest.raises(DatasetFormatError) as e:
        CocoDetection(ann, images)
    assert str(e.value) == (
        f"{ann}, image 3: declared size 80x60 differs from the image {images / 'b.png'}: 40x30 stored"
    )
    assert len(CocoDetection(ann, images, check_images=False)) == 3  # the cheap check can be skipped


@pytest.mark.parametrize(
    "bbox, xyxy",
    [
        ([30, 2, 30, 5], "[30, 2, 60, 7]"),
        ([1, 20, 5, 12], "[1, 20, 6, 32]"),
        ([-3, 0, 5, 5], "[-3, 0, 2, 5]"),
    ],
)
def test_coco_box_outside_its_image_fails_at_load(tmp_path, bbox, xyxy):
    data = coco_dict()
    data["annotations"][0]["bbox"] = bbox  # on image 7, 40x30
    ann, images = write_coco(tmp_path, data)
    with pytest.raises(DatasetFormatError) as e:
        CocoDetection(ann, images, check_images=False)
    assert str(e.value) == (
        f"{ann}, annotation 100: bbox of image 7 [x1, y1, x2, y2] = {xyxy} falls outside the 40x30 image"
    )


def test_coco_box_within_a_pixel_of_the_edge_is_rounding(tmp_path):
    data = coco_dict()
    data["annotations"][0]["bbox"] = [-0.5, 0, 40.9, 30.5]
    ann, images = write_coco(tmp_path, data)
    np.testing.assert_allclose(CocoDetection(ann, images)[1].boxes[0], [-0.5, 0, 40.4, 30.5])


def test_refcoco_box_outside_and_declared_size_fail_at_load(tmp_path):
    folder = write_refer(tmp_path)
    data = coco_dict()
    data["annotations"][2]["bbox"] = [0, 0, 41.5, 30]
    (folder / "instances.json").write_text(json.dumps(data))
    with pytest.raises(
        DatasetFormatError, match=r"instances.json, annotation 102: bbox of image 3 .* outsid"
    ):
        RefCocoGrounding.from_root(tmp_path)
    data = coco_dict()
    data["images"][0].update(width=30, height=40)
    (folder / "instances.json").write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"instances.json, image 7: declared size 30x40 differs"):
        RefCocoGrounding.from_root(tmp_path, split="train")


# -- entries left out are counted per reason and reported once ------------------------------------------
def _refs_with_problems() -> list:
    refs = refs_list()  # ref 1: train, 2 sentences; ref 2: val, 1; ref 3: testA, 1
    refs[1]["split"] = "Train"  # a split name in another case: still train
    refs[2]["split"] = "TRAIN"
    refs[2]["sentences"].append({"sent": "  ", "sent_id": 32})  # an empty sentence
    refs.append({**refs[0], "ref_id": 4, "sentences": []})  # a ref without sentences
    refs.append(
        {**refs[0], "ref_id": 5, "category_id": 555, "sentences": [{"sent": "a thing", "sent_id": 51}]}
    )
    refs.append({**refs[0], "ref_id": 6, "split": "dev"})  # no refer split
    return refs


def test_refcoco_counts_and_reports_what_it_leaves_out(tmp_path):
    folder = write_refer(tmp_path, _refs_with_problems())
    with pytest.warns(DroppedEntriesWarning) as record:
        ds = RefCocoGrounding.from_root(tmp_path, split="TRAIN")
    assert ds.split == "train" and ds.name == "refcoco-train"
    assert [s.sample_id for s in ds] == [
        f"refcoco-train/{ref}/{sent}" for ref, sent in [(1, 11), (1, 12), (2, 21), (3, 31), (5, 51)]
    ]
    assert ds[4].labels == () and ds[3].labels == ("person",)
    assert ds.dropped == {
        "ref whose split is none of train, val, test, testA, testB, testC (in no split)": 1,
        "empty sentence": 1,
        "ref without sentences": 1,
        "ref whose category_id is not in instances.json (kept without a label)": 1,
    }
    assert len(record) == 1  # once, every reason in one message, each with its first entry
    message = str(record[0].message)
    assert message.startswith("refcoco-train: ") and f"{folder / 'refs(unc).p'}, ref 4" in message
    assert f"{folder / 'refs(unc).p'}, ref 3, sentence 1" in message


def test_refcoco_without_problems_reports_nothing(tmp_path, recwarn):
    write_refer(tmp_path)
    assert RefCocoGrounding.from_root(tmp_path, split="testa").dropped == {}
    assert not [w for w in recwarn if issubclass(w.category, DroppedEntriesWarning)]


def test_coco_skip_empty_is_counted(tmp_path):
    ann, images = write_coco(tmp_path)
    with pytest.warns(DroppedEntriesWarning, match=r"1 x image without annotations \(skip_empty=True\)"):
        ds = CocoDetection(ann, images, skip_empty=True)
    assert len(ds) == 2 and ds.dropped == {"image without annotations (skip_empty=True)": 1}
    assert CocoDetection(ann, images).dropped == {}


# -- split and dataset names in another case --------------------------------------------------------------
def test_split_names_in_any_case(tmp_path):
    write_coco_official(tmp_path / "coco")
    assert len(make_dataset("detection", "coco", split="Val", root=tmp_path / "coco")) == 3
    write_refer(tmp_path / "refer")
    refer = make_dataset("grounding", "refcoco", split="TestA", root=tmp_path / "refer", dataset="RefCOCO")
    assert len(refer) == 1 and refer.name == "refcoco-testA"
    write_pixmo_count_export(tmp_path / "pixmo")
    assert len(make_dataset("counting", "pixmo-count", split="VAL", root=tmp_path / "pixmo")) == 3
    write_page_ocr_pages(tmp_path / "ocr")
    assert len(make_dataset("ocr", "page-ocr", split="TEST_ZH", root=tmp_path / "ocr")) == 2


def test_split_file_ambiguous_or_missing(tmp_path):
    write_page_ocr_pages(tmp_path)
    (tmp_path / "test_en.jsonl").rename(tmp_path / "Test.jsonl")
    (tmp_path / "test_zh.jsonl").rename(tmp_path / "TEST.jsonl")
    with pytest.raises(ValueError, match=r"split 'test' is ambiguous in .*: TEST.jsonl, Test.jsonl"):
        PageOcr.from_root(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"valid.jsonl \(splits in .*: TEST, Test, train\)"):
        PageOcr.from_root(tmp_path, "valid")


def test_jsonl_unknown_label_names_the_line(tmp_path):
    write_png(tmp_path / "a.png")
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"image": "a.png", "boxes": [], "labels": []},
            {"image": "a.png", "boxes": [[1, 1, 2, 2]], "labels": ["yak"]},
        ],
    )
    with pytest.raises(DatasetFormatError, match=r"d.jsonl, line 2: labels \['yak'\] are not in the given"):
        JsonlDataset(path, "detection", categories=["cat"])
