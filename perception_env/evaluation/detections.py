"""A detection evaluation's boxes as COCO files: ``detections.json`` and its ``ground_truth.json``.

``detections.json`` is a COCO results file (what pycocotools' ``COCO.loadRes`` reads):
``[{"image_id", "category_id", "bbox": [x, y, w, h], "score": 1.0}]``, boxes in pixels of the ORIGINAL
image, on the ground truth the evaluation's COCO AP used (:func:`~perception_env.evaluation.coco.detection_ground_truth`):
the dataset's own image and category ids for COCO data, else images 1..N in answer order and categories
1..K in the dataset's order. ``ground_truth.json`` is that ground truth restricted to the images answered
(COCO instances format), so that ``COCOeval(gt, gt.loadRes("detections.json"), "bbox")`` gives the AP of
``metrics.json``::

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO("ground_truth.json")
    ev = COCOeval(gt, gt.loadRes("detections.json"), iouType="bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()   # ev.stats[0] == metrics["AP"]

(``loadRes`` refuses an empty list: an evaluation with no scorable box writes ``[]``, AP 0.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perception_env.data.sample import Sample
from perception_env.evaluation.coco import detection_ground_truth, to_coco_results
from perception_env.evaluation.metrics import parsed_boxes, parsed_of


def coco_files(
    records: Sequence[Mapping[str, Any]], samples: Sequence[Sample], dataset: Any = None
) -> tuple[list[dict], dict]:
    """``(results, ground_truth)``: the records' boxes as COCO results and the ground truth they are
    scored on (a COCO instances dict of the images answered), as the task's metrics score them."""
    if len(records) != len(samples):
        raise ValueError(f"{len(records)} records for {len(samples)} samples")
    truth = detection_ground_truth(samples, dataset)
    parsed = [parsed_of(records[k]) for k in truth.keep]
    results = to_coco_results(
        truth.image_ids,
        [parsed_boxes(p) for p in parsed],
        [list(p.get("labels") or []) for p in parsed],
        truth.name_to_category_id,
    ).results
    full = truth.coco.dataset
    answered = set(truth.image_ids)
    ground_truth = {
        "images": [image for image in full["images"] if image["id"] in answered],
        "annotations": [a for a in full.get("annotations", []) if a["image_id"] in answered],
        "categories": list(full["categories"]),
    }
    for key in ("info", "licenses"):
        if key in full:
            ground_truth[key] = full[key]
    return results, ground_truth


def write_coco_files(
    out_dir: str | Path, records: Sequence[Mapping[str, Any]], samples: Sequence[Sample], dataset: Any = None
) -> dict[str, Path]:
    """Write ``detections.json`` and ``ground_truth.json`` into ``out_dir``; returns their paths."""
    results, ground_truth = coco_files(records, samples, dataset)
    out = Path(out_dir)
    paths = {"detections": out / "detections.json", "ground_truth": out / "ground_truth.json"}
    paths["detections"].write_text(json.dumps(results) + "\n", encoding="utf-8")
    paths["ground_truth"].write_text(json.dumps(ground_truth) + "\n", encoding="utf-8")
    return paths
