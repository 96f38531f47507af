"""COCO detection metrics through pycocotools' ``COCOeval``, as the paper reports them.

Predictions are boxes in ORIGINAL-image pixels (what every answer format
parses to: :attr:`~perception_env.formats.ParsedAnswer.boxes`), each scored
1.0 as the paper did (a generative model gives no confidence), so within an
image COCOeval keeps them in answer order (its sort is stable) and at most
``maxDets=100`` of them count.

Ground truth is either the dataset's own pycocotools index (real COCO: the
official ``area`` from segmentations, ``iscrowd``, non-contiguous category
ids through ``name_to_category_id``), or one built in memory from the samples
(:func:`coco_from_samples`: ``area`` = box area, ``iscrowd`` honoured,
categories numbered 1..K in the dataset's order).

Predicted labels are mapped to category ids by exact name, then by name
ignoring case and surrounding space; a box with no label or an unknown label
cannot be scored by COCO and is dropped (counted in ``dropped_predictions``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception_env.data.sample import Sample

# COCOeval.stats order
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; keep it out of ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _index(dataset: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def coco_from_samples(samples: Sequence[Sample], categories: Sequence[str] | None = None, image_ids=None):
    """A pycocotools ``COCO`` ground truth built in memory from samples.

    ``categories``: class names in id order (ids 1..K); default the sorted
    labels found. ``image_ids``: one per sample (default 1..N). Annotation ids
    start at 1 (COCOeval treats a matched id 0 as unmatched). Returns
    ``(coco, name_to_category_id)``.
    """
    names = list(categories) if categories else sorted({label for s in samples for label in s.labels})
    for s in samples:
        unknown = set(s.labels) - set(names)
        if unknown:
            raise ValueError(f"sample {s.sample_id!r} has labels {sorted(unknown)} not in the categories")
    name_to_id = {name: i + 1 for i, name in enumerate(names)}
    image_ids = list(range(1, len(samples) + 1)) if image_ids is None else [int(i) for i in image_ids]
    if len(set(image_ids)) != len(samples):
        raise ValueError("image_ids must be one distinct id per sample")
    images, annotations = [], []
    for iid, s in zip(image_ids, samples):
        images.append({"id": iid, "width": int(s.width), "height": int(s.height), "file_name": s.sample_id})
        boxes = np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)
        crowd = s.iscrowd or (False,) * len(boxes)
        for b, label, c in zip(boxes, s.labels, crowd):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": iid,
                    "category_id": name_to_id[label],
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": w * h,
                    "iscrowd": int(bool(c)),
                }
            )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in name_to_id.items()],
    }
    return _index(dataset), name_to_id


def official_coco(dataset: Any, samples: Sequence[Sample]):
    """The dataset's own pycocotools index when it can score these samples as they are, else None.

    It can when the dataset has ``coco`` and ``name_to_category_id`` (e.g.
    :class:`~perception_env.data.CocoDetection`) and every sample carries its
    ``meta["image_id"]`` at the size the index records (not resized by the env).
    """
    coco = getattr(dataset, "coco", None)
    mapping = getattr(dataset, "name_to_category_id", None)
    if coco is None or mapping is None:
        return None
    for s in samples:
        iid = s.meta.get("image_id") if isinstance(s.meta, Mapping) else None
        image = coco.imgs.get(iid) if iid is not None else None
        if image is None or (image.get("width"), image.get("height")) != (s.width, s.height):
            return None
    return coco, dict(mapping)


@dataclass
class CocoPredictions:
    """Answers converted to COCO results: ``[{"image_id", "category_id", "bbox": xywh, "score": 1.0}]``."""

    results: list[dict] = field(default_factory=list)
    dropped: int = 0  # boxes without a label, or with a label that is no category


def _label_lookup(name_to_category_id: Mapping[str, int]):
    folded = {}
    for name, cid in name_to_category_id.items():
        folded.setdefault(name.strip().casefold(), cid)

    def lookup(label: str | None) -> int | None:
        if label is None:
            return None
        if label in name_to_category_id:
            return int(name_to_category_id[label])
        return folded.get(label.strip().casefold())

    return lookup


def to_coco_results(
    image_ids: Sequence[int],
    boxes: Sequence[np.ndarray],
    labels: Sequence[Sequence[str | None]],
    name_to_category_id: Mapping[str, int],
    score: float = 1.0,
) -> CocoPredictions:
    """Per-image pixel boxes ``[x1, y1, x2, y2]`` and labels -> COCO results (every box scored ``score``)."""
    lookup = _label_lookup(name_to_category_id)
    out = CocoPredictions()
    for iid, bxs, labs in zip(image_ids, boxes, labels):
        bxs = np.asarray(bxs, dtype=np.float64).reshape(-1, 4)
        if len(bxs) != len(labs):
            raise ValueError(f"image {iid}: {len(bxs)} boxes but {len(labs)} labels")
        for b, label in zip(bxs, labs):
            cid = lookup(label)
            if cid is None:
                out.dropped += 1
                continue
            out.results.append(
                {
                    "image_id": int(iid),
                    "category_id": cid,
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                    "score": float(score),
                }
            )
    return out


def coco_eval(coco_gt, results: list[dict], image_ids: Sequence[int] | None = None) -> np.ndarray:
    """``COCOeval(iouType="bbox")`` on ``results`` over ``image_ids`` (default all); returns its 12 ``stats``.

    No results at all is a valid evaluation (every AP with ground truth is 0),
    not pycocotools' ``loadRes`` crash on an empty list.
    """
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        if results:
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
        else:
            coco_dt = _index(
                {
                    "images": coco_gt.dataset["images"],
                    "categories": coco_gt.dataset["categories"],
                    "annotations": [],
                }
            )
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def detection_metrics(
    coco_gt,
    image_ids: Sequence[int],
    boxes: Sequence[np.ndarray],
    labels: Sequence[Sequence[str | None]],
    name_to_category_id: Mapping[str, int],
) -> dict[str, float]:
    """COCO AP, AP50, AP75, AP small/medium/large (and AR) as fractions, plus prediction counts.

    A value COCOeval reports as -1 (no ground truth in that area range) is NaN here.
    """
    preds = to_coco_results(image_ids, boxes, labels, name_to_category_id)
    stats = coco_eval(coco_gt, preds.results, image_ids)
    out = {name: (float("nan") if v < 0 else float(v)) for name, v in zip(COCO_STAT_NAMES, stats)}
    out["predictions"] = float(len(preds.results))
    out["dropped_predictions"] = float(preds.dropped)
    return out


@dataclass
class DetectionGroundTruth:
    """The COCO ground truth an evaluation's detection answers are scored on, and how answers map to it.

    ``image_ids[k]`` is the COCO image id of the ``keep[k]``-th answer: the dataset's own ids when
    ``official`` (an image answered twice is scored once, its first answer), else 1..N in answer order.
    """

    coco: Any
    name_to_category_id: dict[str, int]
    image_ids: list[int]
    keep: list[int]
    official: bool


def detection_ground_truth(
    samples: Sequence[Sample], dataset: Any = None, categories: Sequence[str] | None = None
) -> DetectionGroundTruth:
    """The dataset's own COCO index where :func:`official_coco` allows, else one built from ``samples``
    with ``categories`` (default ``dataset.categories``, else the labels found)."""
    official = official_coco(dataset, samples) if dataset is not None else None
    if official is not None:
        coco, name_to_id = official
        first: dict[int, int] = {}
        for k, s in enumerate(samples):
            first.setdefault(int(s.meta["image_id"]), k)
        keep = sorted(first.values())
        image_ids = [int(samples[k].meta["image_id"]) for k in keep]
        return DetectionGroundTruth(coco, name_to_id, image_ids, keep, True)
    cats = categories or (list(getattr(dataset, "categories", ()) or ()) or None)
    coco, name_to_id = coco_from_samples(samples, cats)
    n = len(samples)
    return DetectionGroundTruth(coco, name_to_id, list(range(1, n + 1)), list(range(n)), False)
