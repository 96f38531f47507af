"""Your own data: one JSON object per line, one schema per task.

Image paths are relative to the JSONL file's folder (or absolute). Width and
height are read from the image header at load time (cheap: no decoding)
unless the record gives ``"width"`` and ``"height"``. All coordinates are
pixels of the original image, x right, y down::

    detection  {"image": "a.png", "boxes": [[x1, y1, x2, y2], ...], "labels": ["cat", ...]}
               (optional "iscrowd": [0, 1, ...])
    counting   {"image": "a.png", "query": "apple", "points": [[x, y], ...]}
               or {"image": "a.png", "query": "apple", "count": 3}   (no points: count-only)
    grounding  {"image": "a.png", "expression": "the red cup", "box": [x1, y1, x2, y2]}
    ocr        {"image": "a.png", "text": "line one\\nline two"}

Detection ``categories`` are the sorted distinct labels unless given. Any
malformed line fails at load time with a ``DatasetFormatError`` naming the
file and the line; a missing image with ``FileNotFoundError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from perception_env.data.loaders._records import (
    Where,
    box,
    check_index,
    field,
    image_size,
    iter_jsonl,
    point,
    resolve_image,
)
from perception_env.data.sample import Sample

Parser = Callable[[dict, Where], dict]  # record -> Sample fields (besides image, size, id)


def _detection(r: dict, w: Where) -> dict:
    boxes, labels = field(r, "boxes", list, w), field(r, "labels", list, w)
    if len(boxes) != len(labels):
        raise w.error(f"{len(boxes)} boxes but {len(labels)} labels")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise w.error(f"labels[{i}] must be a non-empty string, got {label!r:.60}")
    crowd = field(r, "iscrowd", list, w, optional=True)
    if crowd is not None and (len(crowd) != len(boxes) or any(c not in (0, 1) for c in crowd)):
        raise w.error("iscrowd must be a list of 0/1, one per box")
    return {
        "boxes": np.array([box(b, f"boxes[{i}]", w) for i, b in enumerate(boxes)], dtype=np.float64).reshape(
            -1, 4
        ),
        "labels": tuple(labels),
        "iscrowd": tuple(bool(c) for c in crowd) if crowd is not None else (),
    }


def _counting(r: dict, w: Where) -> dict:
    query = field(r, "query", str, w)
    points = field(r, "points", list, w, optional=True)
    count = field(r, "count", int, w, optional=True)
    if points is None and count is None:
        raise w.error("needs 'points' or 'count'")
    pts = np.array([point(p, f"points[{i}]", w) for i, p in enumerate(points or [])], dtype=np.float64)
    if count is not None and points is not None and count != len(pts):
        raise w.error(f"count {count} differs from the {len(pts)} points")
    if count is not None and count < 0:
        raise w.error(f"count must be >= 0, got {count}")
    return {"query": query, "points": pts.reshape(-1, 2), "count": len(pts) if count is None else count}


def _grounding(r: dict, w: Where) -> dict:
    expression = field(r, "expression", str, w)
    if not expression.strip():
        raise w.error("empty expression")
    return {"query": expression, "boxes": box(field(r, "box", list, w), "box", w).reshape(1, 4)}


def _ocr(r: dict, w: Where) -> dict:
    return {"text": field(r, "text", str, w)}


PARSERS: dict[str, Parser] = {
    "detection": _detection,
    "counting": _counting,
    "grounding": _grounding,
    "ocr": _ocr,
}


def check_inside(fields: dict, width: int, height: int, w: Where) -> None:
    """Coordinates beyond the image (by more than a pixel) usually mean the wrong units."""
    for key in ("boxes", "points"):
        arr = fields.get(key)
        if arr is not None and len(arr):
            xs, ys = arr[:, 0::2], arr[:, 1::2]
            if xs.min() < -1 or ys.min() < -1 or xs.max() > width + 1 or ys.max() > height + 1:
                raise w.error(f"{key} fall outside the {width}x{height} image (pixels expected)")


class JsonlDataset:
    """Samples from a JSONL file in the schema of ``task`` (see the module docstring).

    Arguments: ``path``, ``task``, ``categories`` (detection class names in id
    order; default: the sorted distinct labels), ``name``, ``image_root``
    (folder that relative image paths start from; default: the file's folder).
    Sample ``meta``: ``line`` (1-based line number in the file).
    """

    def __init__(
        self,
        path: str | Path,
        task: str,
        *,
        categories: Sequence[str] | None = None,
        name: str | None = None,
        image_root: str | Path | None = None,
        parser: Parser | None = None,
        check_coordinates: bool = True,
    ):
        if task not in PARSERS:
            raise ValueError(f"unknown task {task!r}; one of {sorted(PARSERS)}")
        self.path, self.task = Path(path), task
        self.name = name or self.path.stem
        root = Path(image_root) if image_root is not None else self.path.parent
        parse = parser or PARSERS[task]
        self._samples: list[Sample] = []
        for w, record in iter_jsonl(self.path):
            fields = parse(record, w)
            image = resolve_image(field(record, "image", str, w), root, w)
            width, height = image_size(image, record, w)
            if check_coordinates:
                check_inside(fields, width, height, w)
            self._samples.append(
                Sample(
                    sample_id=f"{self.name}/{w.entry.split()[-1]}",
                    width=width,
                    height=height,
                    image_path=str(image),
                    meta={"line": int(w.entry.split()[-1])},
                    **fields,
                )
            )
        labels = sorted({label for s in self._samples for label in s.labels}) if task == "detection" else []
        self.categories = tuple(categories) if categories is not None else tuple(labels)
        unknown = set(labels) - set(self.categories)
        if unknown:
            raise ValueError(f"{self.path}: labels {sorted(unknown)} are not in the given categories")

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        return self._samples[check_index(index, len(self), self.name)]
