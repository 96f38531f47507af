"""Validation helpers shared by the loaders: every check names the file and the entry.

``Where`` carries (file, entry) so that each helper can raise a
:class:`DatasetFormatError` that says exactly where the problem is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception_env.data.loaders.errors import DatasetFormatError


@dataclass(frozen=True)
class Where:
    file: Path
    entry: str | None = None

    def error(self, problem: str) -> DatasetFormatError:
        return DatasetFormatError(self.file, self.entry, problem)

    def at(self, entry: str) -> Where:
        return Where(self.file, entry)


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


def image_size(path: Path, record: dict, where: Where) -> tuple[int, int]:
    """``(width, height)`` from the record when given, else from the image header (no decoding)."""
    if "width" in record or "height" in record:
        w, h = field(record, "width", int, where), field(record, "height", int, where)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise where.error(f"cannot read image {path}: {e}") from None
    if w <= 0 or h <= 0:
        raise where.error(f"image size must be positive, got {w}x{h}")
    return w, h


def check_index(index: int, length: int, name: str) -> int:
    """Datasets are not Python lists: a negative index is an error, not "from the end"."""
    import operator

    index = operator.index(index)
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {name} of {length} samples")
    return index
