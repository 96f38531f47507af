"""One call from scored episodes to the paper's metrics for their task.

``task_metrics(task, infos, samples)`` takes what an evaluation collected: one
dict per episode holding at least ``"parsed"`` (a :meth:`ParsedAnswer.to_info`
-style dict: ``boxes``/``points`` in original pixels, ``labels``, ``count``,
``text``) and, when present, ``reward``, ``is_success`` and ``answer_format``
-- an env's ``step`` info is such a dict, and so is a line of the
evaluation's ``predictions.jsonl`` -- and the samples they answered (the env's
``sample`` after reset: in the frame the env scored in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perception_env.data.sample import Sample
from perception_env.evaluation.coco import coco_from_samples, detection_metrics
from perception_env.evaluation.metrics import counting_metrics, grounding_metrics, ocr_metrics


def _parsed(info: Mapping[str, Any]) -> Mapping[str, Any]:
    parsed = info.get("parsed")
    return parsed if isinstance(parsed, Mapping) else {}


def _boxes(parsed: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(parsed.get("boxes") or [], dtype=np.float64).reshape(-1, 4)


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


def task_metrics(
    task: str,
    infos: Sequence[Mapping[str, Any]],
    samples: Sequence[Sample],
    *,
    dataset: Any = None,
    categories: Sequence[str] | None = None,
) -> dict[str, float]:
    """The paper's metrics for ``task`` (fractions; see :mod:`perception_env.evaluation.metrics`), plus
    ``n``, mean ``reward``, ``success`` rate and ``well_formed`` rate.

    Detection uses ``dataset``'s own COCO index when :func:`official_coco`
    allows, else a ground truth built from ``samples`` with ``categories``
    (default ``dataset.categories``, else the labels found).
    """
    if len(infos) != len(samples):
        raise ValueError(f"{len(infos)} infos for {len(samples)} samples")
    parsed = [_parsed(i) for i in infos]
    out: dict[str, float] = {"n": float(len(infos))}
    if task == "detection":
        official = official_coco(dataset, samples) if dataset is not None else None
        if official is not None:
            coco, name_to_id = official
            image_ids = [int(s.meta["image_id"]) for s in samples]
            if len(set(image_ids)) != len(image_ids):  # the same image twice: score it once, first answer
                first = {}
                for k, iid in enumerate(image_ids):
                    first.setdefault(iid, k)
                keep = sorted(first.values())
                image_ids, parsed = [image_ids[k] for k in keep], [parsed[k] for k in keep]
        else:
            cats = categories or (list(getattr(dataset, "categories", ()) or ()) or None)
            coco, name_to_id = coco_from_samples(samples, cats)
            image_ids = list(range(1, len(samples) + 1))
        out.update(
            detection_metrics(
                coco,
                image_ids,
                [_boxes(p) for p in parsed],
                [list(p.get("labels") or []) for p in parsed],
                name_to_id,
            )
        )
        out["official_coco_gt"] = 1.0 if official is not None else 0.0
    elif task == "grounding":
        firsts = [(b[0] if len(b) else None) for b in (_boxes(p) for p in parsed)]
        gts = [np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)[0] for s in samples]
        out.update(grounding_metrics(firsts, gts))
    elif task == "counting":
        preds = []
        for info, p in zip(infos, parsed):
            if info.get("answer_format") == "number" or (p.get("count") is not None and not p.get("points")):
                preds.append(p.get("count"))
            else:
                preds.append(len(p.get("points") or []))
        gts = [s.count if s.count is not None else _target_count(s) for s in samples]
        out.update(counting_metrics(preds, gts))
    elif task == "ocr":
        out.update(ocr_metrics([p.get("text") for p in parsed], [s.text for s in samples]))
    else:
        raise ValueError(f"unknown task {task!r}")
    if infos:
        out["reward"] = float(np.mean([float(i.get("reward", 0.0)) for i in infos]))
        out["success"] = float(np.mean([bool(i.get("is_success", False)) for i in infos]))
        out["well_formed"] = float(np.mean([bool(p.get("well_formed", False)) for p in parsed]))
    return out


def _target_count(sample: Sample) -> int:
    points = np.asarray(sample.points).reshape(-1, 2)
    return len(points) if len(points) else len(np.asarray(sample.boxes).reshape(-1, 4))
