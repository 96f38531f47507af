"""Detection AP: ours equals pycocotools' own COCOeval; the oracle gets 100 through the resized frame."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from perception_env.data import CocoDetection, Sample
from perception_env.evaluation import run_evaluation, task_metrics
from perception_env.evaluation.coco import coco_eval, coco_from_samples, detection_metrics
from perception_env.evaluation.runner import empty_answerer, oracle_answerer
from perception_env.frames import CoordinateFrame
from perception_env.tasks.detection import DetectionEnv

# Non-contiguous category ids, as COCO's (a position in the list is not an id).
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]


def _ann(aid, iid, cid, x, y, w, h, crowd=0):
    return {
        "id": aid,
        "image_id": iid,
        "category_id": cid,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": crowd,
    }


@pytest.fixture
def coco_fixture(tmp_path):
    images = [
        {"id": 11, "file_name": "a.png", "width": 640, "height": 480},
        {"id": 12, "file_name": "b.png", "width": 320, "height": 240},
        {"id": 13, "file_name": "c.png", "width": 100, "height": 100},  # no annotations
    ]
    annotations = [
        _ann(1, 11, 1, 10, 10, 100, 200),  # person, large
        _ann(2, 11, 3, 300, 300, 60, 40),  # car, medium
        _ann(3, 11, 1, 400, 20, 200, 150, crowd=1),  # a crowd of people: matching it is neither TP nor FP
        _ann(4, 11, 7, 5, 400, 20, 20),  # dog, small
        _ann(5, 12, 7, 50, 50, 100, 80),  # dog, large
    ]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    for im in images:
        Image.new("RGB", (im["width"], im["height"])).save(tmp_path / im["file_name"])
    return path, tmp_path


# Per image: boxes [x1, y1, x2, y2] in pixels and labels.
PREDICTIONS = {
    11: (
        [
            [10, 10, 110, 210],
            [305, 302, 362, 340],
            [420, 30, 560, 160],
            [5, 400, 25, 420],
            [200, 200, 240, 240],
        ],
        ["person", "Car ", "person", "cat", "dog"],  # "Car " maps by case/space; "cat" is no category
    ),
    12: ([], []),
    13: ([[0, 0, 50, 50]], ["car"]),  # a false positive on the empty image
}


def _pycocotools_stats(path, image_ids):
    """The reference: pycocotools reading the file itself, results in xywh, every score 1.0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    name_to_id = {c["name"]: c["id"] for c in CATEGORIES}
    results = []
    for iid in image_ids:
        for b, label in zip(*PREDICTIONS[iid]):
            cid = name_to_id.get(label.strip().lower())
            if cid is not None:
                results.append(
                    {
                        "image_id": iid,
                        "category_id": cid,
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        "score": 1.0,
                    }
                )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _ours(coco, name_to_id, image_ids):
    boxes = [np.asarray(PREDICTIONS[i][0], dtype=float).reshape(-1, 4) for i in image_ids]
    labels = [PREDICTIONS[i][1] for i in image_ids]
    return detection_metrics(coco, image_ids, boxes, labels, name_to_id)


def _as_stats(m):
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    return np.array([-1.0 if np.isnan(m[k]) else m[k] for k in keys])


def test_detection_ap_equals_pycocotools(coco_fixture):
    path, root = coco_fixture
    ds = CocoDetection(path, root)
    ids = [11, 12, 13]
    ref = _pycocotools_stats(path, ids)
    ours = _ours(ds.coco, ds.name_to_category_id, ids)
    np.testing.assert_allclose(_as_stats(ours), ref, rtol=0, atol=1e-12)
    assert 0 < ours["AP"] < 1  # a non-trivial case: misses, a false positive, a crowd hit
    assert ours["dropped_predictions"] == 1  # "cat"
    # a subset of images (as --limit does): only those are evaluated
    np.testing.assert_allclose(
        _as_stats(_ours(ds.coco, ds.name_to_category_id, [12, 13])), _pycocotools_stats(path, [12, 13])
    )


def test_in_memory_ground_truth_equals_file(coco_fixture):
    """Ground truth built from Samples (area = box area here, as in the file) scores the same."""
    path, root = coco_fixture
    ds = CocoDetection(path, root)
    samples = [ds[i] for i in range(len(ds))]
    coco, name_to_id = coco_from_samples(
        samples, ds.categories, image_ids=[s.meta["image_id"] for s in samples]
    )
    np.testing.assert_allclose(
        _as_stats(_ours(coco, name_to_id, [11, 12, 13])), _pycocotools_stats(path, [11, 12, 13])
    )


def test_task_metrics_uses_the_official_index(coco_fixture):
    path, root = coco_fixture
    ds = CocoDetection(path, root)
    samples = [ds[i] for i in range(len(ds))]
    infos = [
        {
            "parsed": {
                "boxes": PREDICTIONS[s.meta["image_id"]][0],
                "labels": PREDICTIONS[s.meta["image_id"]][1],
            }
        }
        for s in samples
    ]
    m = task_metrics("detection", infos, samples, dataset=ds)
    assert m["official_coco_gt"] == 1.0
    np.testing.assert_allclose(_as_stats(m), _pycocotools_stats(path, [11, 12, 13]))


def test_no_predictions_is_ap_zero_not_a_crash(coco_fixture):
    path, root = coco_fixture
    ds = CocoDetection(path, root)
    stats = coco_eval(ds.coco, [], [11, 12, 13])
    assert stats[0] == 0.0 and stats[1] == 0.0


class _ListDataset:
    name = "resized-fixture"
    categories = ("person", "car", "dog")

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def _resized_env():
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    boxes = np.array(
        [[160, 120, 180, 140], [40, 50, 200, 170], [300, 100, 620, 470], [400, 20, 460, 80]], dtype=float
    )
    # areas: 400 (small), 19200 and 118400 (large), 3600 (medium)
    samples = [
        Sample("img/0", 640, 480, image=image, boxes=boxes, labels=("dog", "car", "person", "car")),
        Sample("img/1", 640, 480, image=image),  # empty image
        Sample(
            "img/2",
            640,
            480,
            image=image,
            boxes=boxes[1:],
            labels=("person", "person", "dog"),
            iscrowd=(False, True, False),
        ),
    ]
    return DetectionEnv(dataset=_ListDataset(samples), answer_format="qwen2.5-vl")


def test_qwen25_oracle_through_the_resized_frame_is_ap_100():
    env = _resized_env()
    env.reset(options={"index": 0})
    frame = env.frame
    assert frame == CoordinateFrame.resized_pixels(640, 480)
    assert frame.extent == (644.0, 476.0)  # smart_resize is not the identity here
    answer = json.loads(env.oracle_answer())
    assert answer[1]["bbox_2d"] == [40, 50, 201, 169]  # resized pixels, not the original 200/170
    result = run_evaluation(env, oracle_answerer)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert result.metrics[key] == pytest.approx(1.0, abs=1e-12), key
    # the predictions file holds original pixels
    assert np.allclose(result.records[0]["parsed"]["boxes"][1], [40, 50, 200, 170], atol=0.6)


def test_qwen25_empty_answers_are_ap_0():
    result = run_evaluation(_resized_env(), empty_answerer)
    assert result.metrics["AP"] == 0.0 and result.metrics["AP50"] == 0.0
    assert result.records[0]["answer"] == "[]"


def test_qwen25_oracle_on_the_official_coco_file_is_ap_100(coco_fixture):
    """Original COCO annotations (non-contiguous ids, a crowd, an image without objects, sizes that
    smart_resize changes): Qwen2.5-VL answers in resized pixels -> original pixels -> COCOeval -> AP 100."""
    path, root = coco_fixture
    ds = CocoDetection(path, root)
    env = DetectionEnv(dataset=ds, answer_format="qwen2.5-vl")
    frames = []
    for i in range(3):
        env.reset(options={"index": i})
        frames.append((env.frame.image_width, env.frame.image_height, *env.frame.extent))
    assert frames == [(640, 480, 644.0, 476.0), (320, 240, 308.0, 252.0), (100, 100, 112.0, 112.0)]
    result = run_evaluation(env, oracle_answerer)
    assert result.metrics["official_coco_gt"] == 1.0 and result.metrics["dropped_predictions"] == 0
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert result.metrics[key] == pytest.approx(1.0, abs=1e-12), key
    image_ids = [r["image_id"] for r in result.records]
    labels = [r["parsed"]["labels"] for r in result.records]

    def ap_of(answers, read_as_pixels=False):
        boxes = []
        for i, answer in enumerate(answers):
            env.reset(options={"index": i})
            boxes.append(env.answer_format.parse(answer, None if read_as_pixels else env.frame).boxes)
        return detection_metrics(ds.coco, image_ids, boxes, labels, ds.name_to_category_id)

    # integer answers, as a model writes them: rounding in the 644x476 frame costs the 20x20 dog
    # its IoU > 0.95 (0.949), so only the strictest thresholds of the small-object AP drop
    integer = []
    for i in range(3):
        env.reset(options={"index": i})
        integer.append(env.oracle_answer())
    m = ap_of(integer)
    assert m["AP50"] == m["AP75"] == pytest.approx(1.0) and m["APs"] == pytest.approx(0.9)
    # the same answers read as original pixels (the official code's frame mistake) lose AP
    assert ap_of([r["answer"] for r in result.records], read_as_pixels=True)["AP"] < 0.9
