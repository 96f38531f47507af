r"""Your own data: one JSON object per line, one schema per task.

Image paths are relative to the JSONL file's folder (or absolute). Each
image's header is read at load time (cheap: no decoding): an unreadable file
fails there, and width and height come from it, or, when the record gives
``"width"`` and ``"height"``, are checked against it. All coordinates are
pixels of the original image shown UPRIGHT (its EXIF orientation applied, as
today's annotation tools and browsers show it; a declared size that fits only
the stored frame selects that one; ``exif_orientation`` overrides), x right, y
down, and must lie in the image::

    detection  {"image": "a.png", "boxes": [[x1, y1, x2, y2], ...], "labels": ["cat", ...]}
               (optional "iscrowd": [0, 1, ...])
    counting   {"image": "a.png", "query": "apple", "points": [[x, y], ...]}
               or {"image": "a.png", "query": "apple", "count": 3}   (no points: count-only)
    grounding  {"image": "a.png", "expression": "the red cup", "box": [x1, y1, x2, y2]}
    ocr        {"image": "a.png", "text": "line one\nline two"}

A task's class names its schema (``jsonl_schema``, a :class:`RecordSchema`: the fields a line may hold
and how they become :class:`~perception_env.data.sample.Sample` fields); the four above are
:data:`SCHEMAS`. A task of your own declares its own schema, and its target fields go to
``Sample.targets`` (a mapping) where ``Sample`` has no field for them.

Detection ``categories`` are the sorted distinct labels unless given. Any
malformed line fails at load time with a ``DatasetFormatError`` naming the
file and the line; a missing image with ``FileNotFoundError``. Nothing is
left out silently (``dropped`` is empty: a bad line is an error).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception_env.data.loaders._records import (
    box,
    check_index,
    check_inside,
    declared_size,
    field,
    image_frame,
    iter_jsonl,
    point,
    resolve_image,
)
from perception_env.data.loaders.errors import Where
from perception_env.data.loaders.images import exif_policy
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


# the fields every line may hold, whatever its task
IMAGE_FIELDS = ("image", "width", "height")


@dataclass(frozen=True)
class RecordSchema:
    """One task's JSONL schema: its ``name`` (in messages), the ``fields`` a line may hold besides
    :data:`IMAGE_FIELDS` (the Hugging Face source maps columns to them) and ``parse`` (a line ->
    ``Sample`` fields; raises through ``where`` naming the file and line)."""

    name: str
    fields: tuple[str, ...]
    parse: Parser


DETECTION = RecordSchema("detection", ("boxes", "labels", "iscrowd"), _detection)
COUNTING = RecordSchema("counting", ("query", "points", "count"), _counting)
GROUNDING = RecordSchema("grounding", ("expression", "box"), _grounding)
OCR = RecordSchema("ocr", ("text",), _ocr)
SCHEMAS: dict[str, RecordSchema] = {schema.name: schema for schema in (DETECTION, COUNTING, GROUNDING, OCR)}


def get_schema(schema: RecordSchema | str) -> RecordSchema:
    """``schema`` itself, or the built-in schema of that name (``ValueError`` naming them)."""
    if isinstance(schema, RecordSchema):
        return schema
    try:
        return SCHEMAS[schema]
    except (KeyError, TypeError):
        raise ValueError(
            f"no JSONL schema {schema!r}; one of {sorted(SCHEMAS)}, or a task's own RecordSchema"
        ) from None


class JsonlDataset:
    """Samples from a JSONL file in ``schema`` (a :class:`RecordSchema`, or a built-in one's name: the
    module docstring).

    Arguments: ``path``, ``schema``, ``categories`` (detection class names in id
    order; default: the sorted distinct labels), ``name``, ``image_root``
    (folder that relative image paths start from; default: the file's folder),
    ``exif_orientation`` ("auto", "apply", "ignore"; see the module docstring).
    Sample ``meta``: ``line`` (1-based line number in the file).
    """

    def __init__(
        self,
        path: str | Path,
        schema: RecordSchema | str,
        *,
        categories: Sequence[str] | None = None,
        name: str | None = None,
        image_root: str | Path | None = None,
        parser: Parser | None = None,
        check_coordinates: bool = True,
        exif_orientation: str = "auto",
    ):
        self.schema = get_schema(schema)
        exif_policy(exif_orientation)
        self.path = Path(path)
        self.name = name or self.path.stem
        root = Path(image_root) if image_root is not None else self.path.parent
        parse = parser or self.schema.parse
        self._samples: list[Sample] = []
        for w, record in iter_jsonl(self.path):
            fields = parse(record, w)
            image = resolve_image(field(record, "image", str, w), root, w)
            width, height, upright = image_frame(
                image, declared_size(record, w), w, exif=exif_orientation, upright_on_tie=True
            )
            if check_coordinates:
                check_inside(fields, width, height, w)
            self._samples.append(
                Sample(
                    sample_id=f"{self.name}/{w.entry.split()[-1]}",
                    width=width,
                    height=height,
                    image_path=str(image),
                    meta={"line": int(w.entry.split()[-1])},
                    exif_transpose=upright,
                    origin=f"{self.path}, {w.entry}",
                    **fields,
                )
            )
        labels = sorted({label for s in self._samples for label in s.labels})  # empty for label-free tasks
        self.categories = tuple(categories) if categories is not None else tuple(labels)
        for s in self._samples:
            unknown = set(s.labels) - set(self.categories)
            if unknown:
                raise Where(self.path, f"line {s.meta['line']}").error(
                    f"labels {sorted(unknown)} are not in the given categories"
                )
        self.dropped: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        return self._samples[check_index(index, len(self), self.name)]
