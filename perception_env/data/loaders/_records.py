"""Validation helpers shared by the loaders: every check names the file and the entry.

``Where`` (:mod:`.errors`) carries (file, entry) so that each helper can raise a
:class:`DatasetFormatError` that says exactly where the problem is.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from perception_env.data.loaders.errors import DatasetFormatError, DroppedEntriesWarning, Where
from perception_env.data.loaders.images import annotation_frame, read_header


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(path, f"line {e.lineno}", f"invalid JSON: {e.msg}") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[Where, dict]]:
    """``(where, record)`` for each non-blank line; ``where.entry`` is ``"line N"`` (1-based)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = Where(path, f"line {n}")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise where.error(f"invalid JSON: {e.msg}") from None
            if not isinstance(record, dict):
                raise where.error(f"expected a JSON object, got {type(record).__name__}")
            yield where, record


def field(
    record: dict, key: str, types: type | tuple[type, ...], where: Where, *, optional: bool = False
) -> Any:
    """``record[key]`` checked against ``types`` (bools are never numbers here)."""
    if key not in record or (optional and record[key] is None):
        if optional:
            return None
        raise where.error(f"missing field {key!r}")
    value = record[key]
    numeric = types in (int, float) or (isinstance(types, tuple) and set(types) <= {int, float})
    if not isinstance(value, types) or (numeric and isinstance(value, bool)):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise where.error(f"field {key!r} must be {names}, got {type(value).__name__}: {value!r:.60}")
    return value


def number(value: Any, what: str, where: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"{what} must be a number, got {type(value).__name__}: {value!r:.60}")
    if not math.isfinite(value):
        raise where.error(f"{what} is not finite: {value!r}")
    return float(value)


def box(value: Any, what: str, where: Where, *, fmt: str = "xyxy") -> np.ndarray:
    """A box as ``[x1, y1, x2, y2]`` float64 pixels, from ``xyxy`` or COCO ``xywh`` input."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise where.error(f"{what} must be a list of 4 numbers [{', '.join(fmt)}], got {value!r:.80}")
    a, b, c, d = (number(v, what, where) for v in value)
    if fmt == "xywh":
        if c < 0 or d < 0:
            raise where.error(f"{what} has a negative size (w={c:g}, h={d:g})")
        return np.array([a, b, a + c, b + d])
    if c < a or d < b:
        raise where.error(f"{what} has x2 < x1 or y2 < y1: {list(value)}")
    return np.array([a, b, c, d])


def point(value: Any, what: str, where: Where) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise where.error(f"{what} must be [x, y], got {value!r:.80}")
    return np.array([number(v, what, where) for v in value])


def resolve_image(name: str, base: Path, where: Where) -> Path:
    """An image path relative to ``base`` (or absolute); missing files fail now, not mid-training."""
    if not isinstance(name, str) or not name:
        raise where.error(f"image path must be a non-empty string, got {name!r:.80}")
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} (referenced by {where.file}, {where.entry})")
    return path


def declared_size(record: dict, where: Where) -> tuple[int, int] | None:
    """``(width, height)`` when the record gives them (both, positive integers), else None."""
    if "width" not in record and "height" not in record:
        return None
    w, h = field(record, "width", int, where), field(record, "height", int, where)
    if w <= 0 or h <= 0:
        raise where.error(f"image size must be positive, got {w}x{h}")
    return w, h


def image_frame(
    path: Path, declared: tuple[int, int] | None, where: Where, *, exif: str, upright_on_tie: bool
) -> tuple[int, int, bool]:
    """``(width, height, exif_transpose)`` of ``path`` from its header (no decoding), the declared size
    checked against it (see :func:`~perception_env.data.loaders.images.annotation_frame`)."""
    header = read_header(path, where)
    return annotation_frame(path, header, declared, where, exif=exif, upright_on_tie=upright_on_tie)


def declared_image_upright(
    file_name: str, base: Path, declared: tuple[int, int], where: Where, *, exif: str
) -> bool:
    """A COCO-style image entry: the file exists, its header reads and its size is the declared one.
    Whether to turn it upright by its EXIF orientation (a tie goes to the stored pixels, COCO's frame)."""
    path = resolve_image(file_name, base, where)
    return image_frame(path, declared, where, exif=exif, upright_on_tie=False)[2]


def _outside(xs: tuple[float, ...], ys: tuple[float, ...], width: int, height: int) -> bool:
    # a pixel of slack: annotation tools round, and COCO boxes are floats
    return min(xs) < -1 or min(ys) < -1 or max(xs) > width + 1 or max(ys) > height + 1


def check_box_inside(xyxy: np.ndarray, width: int, height: int, what: str, where: Where) -> None:
    """A box beyond the image is in another frame or other units (e.g. a wrong declared size)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if _outside((x1, x2), (y1, y2), width, height):
        raise where.error(
            f"{what} [x1, y1, x2, y2] = [{x1:g}, {y1:g}, {x2:g}, {y2:g}] "
            f"falls outside the {width}x{height} image"
        )


def check_inside(fields: dict, width: int, height: int, where: Where) -> None:
    """Every box and point of a record's ``fields`` lies in the image (pixels expected)."""
    for i, xyxy in enumerate(fields.get("boxes", ())):
        check_box_inside(xyxy, width, height, f"boxes[{i}]", where)
    for i, (x, y) in enumerate(fields.get("points", ())):
        if _outside((x,), (y,), width, height):
            raise where.error(f"points[{i}] = [{x:g}, {y:g}] falls outside the {width}x{height} image")


class DropLog:
    """Entries a loader leaves out (or keeps incomplete), counted per reason and reported once."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._first: dict[str, str] = {}

    def add(self, reason: str, where: Where) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self._first.setdefault(reason, f"{where.file}, {where.entry}" if where.entry else str(where.file))

    def report(self, dataset: str) -> dict[str, int]:
        """One :class:`DroppedEntriesWarning` listing every reason (with its first entry); the counts."""
        if self.counts:
            parts = "; ".join(f"{n} x {why} (first: {self._first[why]})" for why, n in self.counts.items())
            warnings.warn(f"{dataset}: {parts}", DroppedEntriesWarning, stacklevel=3)
        return dict(self.counts)


def split_file(root: str | Path, split: str, suffix: str = ".jsonl") -> Path:
    """``root/<split><suffix>``, the split name matched ignoring case when that is unambiguous."""
    root = Path(root)
    exact = root / f"{split}{suffix}"
    if exact.is_file() or not root.is_dir():
        return exact
    found = sorted(p for p in root.iterdir() if p.suffix == suffix and p.is_file())
    matches = [p for p in found if p.name.casefold() == exact.name.casefold()]
    if len(matches) == 1:
        return matches[0]
    splits = ", ".join(p.stem for p in found) or "none"
    if matches:
        raise ValueError(f"split {split!r} is ambiguous in {root}: {', '.join(p.name for p in matches)}")
    raise FileNotFoundError(f"dataset file not found: {exact} (splits in {root}: {splits})")


def check_index(index: int, length: int, name: str) -> int:
    """Datasets are not Python lists: a negative index is an error, not "from the end"."""
    import operator

    index = operator.index(index)
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {name} of {length} samples")
    return index
