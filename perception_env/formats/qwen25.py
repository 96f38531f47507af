"""Qwen2.5-VL's JSON answers (``qwen2.5-vl``): ``bbox_2d`` / ``point_2d`` objects in pixels of the
processor-resized image, optionally fenced; a broken JSON list is salvaged object by object."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from perception_env.formats.base import (
    MAX_OBJECTS,
    NUMBER_RE,
    AnswerFormat,
    ParsedAnswer,
    as_objects,
    clean_label,
    objects_to_pixels,
    to_answer_decimals,
    to_answer_ints,
)
from perception_env.frames import CoordinateFrame

_FENCE = "```"
# What may follow an opening fence before the JSON. Possessive: "```" + n spaces + no closing fence
# cost O(n^3) with the backtracking "```[ \t]*(?:json)?[ \t]*\n?(.*?)```" (55 s at n = 2,000).
_FENCE_INFO_RE = re.compile(r"[ \t]*+(?:json|JSON)?+[ \t]*+\n?+")


def _find_fence(text: str) -> tuple[int, int, int, int] | None:
    """The first fenced block of ``text`` as ``(start, body_start, body_end, end)``; None if unclosed.

    The body runs from after the opening fence's ``json`` line to the next fence. Two ``str.find``
    calls and one anchored match: linear in ``len(text)``.
    """
    start = text.find(_FENCE)
    if start < 0:
        return None
    body_start = _FENCE_INFO_RE.match(text, start + len(_FENCE)).end()
    body_end = text.find(_FENCE, body_start)
    if body_end < 0:
        return None
    return start, body_start, body_end, body_end + len(_FENCE)


_OBJECT_CHUNK_RE = re.compile(r"\{[^{}]*\}")
_SALVAGE_COORDS_RE = re.compile(r"""["']?(bbox_2d|point_2d)["']?\s*:\s*\[([^\[\]]{0,400})\]""")
_SALVAGE_LABEL_RE = re.compile(r"""["']?label["']?\s*:\s*["']([^"']{0,400})["']""")
_MISSING = object()


def _json_loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and over-long ints
        return _MISSING


def _to_float(x: int | float) -> float:
    try:
        return float(x)
    except OverflowError:  # a JSON int too large for a float
        return float("inf") if x > 0 else float("-inf")


class Qwen25VLFormat(AnswerFormat):
    """Qwen2.5-VL JSON: ``[{"bbox_2d": [x1, y1, x2, y2], "label": "dog"}, ...]``.

    Coordinates are ABSOLUTE pixels of the image as resized by the processor
    (``resized-pixels`` frame). Objects may carry ``"point_2d": [x, y]``
    instead (counting). Read with ``json.loads`` (never ``eval``).

    Well-formed means: the stripped answer is a JSON list (bare, or as the only
    content of one ```json fence) whose every item is an object with
    ``bbox_2d`` (4 numbers) or ``point_2d`` (2 numbers) and, if present, a
    string ``label``; no object dropped. ``[]`` is the "no objects" answer.

    Tolerated but not well-formed: text around the JSON, a single object
    instead of a list, invalid JSON (single quotes, trailing commas, a
    truncated list): then every complete ``{...}`` chunk is read on its own,
    by ``json.loads`` or else by a regex for ``bbox_2d``/``point_2d``/``label``.
    """

    name = "qwen2.5-vl"
    frame_name = "resized-pixels"
    produces = "boxes"
    fractional_coordinates = True

    # C901 kept: the fence, the JSON, its salvage and each item, the reader's cases in order
    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer:  # noqa: C901
        problems: list[str] = []
        well_formed = True
        body = answer.strip()
        fence = _find_fence(answer)
        if fence is not None:
            start, body_start, body_end, end = fence
            if answer[:start].strip() or answer[end:].strip():
                problems.append("text around the ```json block")
                well_formed = False
            body = answer[body_start:body_end].strip()
        elif body.startswith(_FENCE):
            problems.append("unterminated ``` fence")
            well_formed = False
            body = body[_FENCE_INFO_RE.match(body, len(_FENCE)).end() :]

        data = _json_loads(body)
        if data is _MISSING:
            well_formed = False
            starts = [i for i in (body.find("["), body.find("{")) if i >= 0]
            end = max(body.rfind("]"), body.rfind("}"))
            if starts and end > min(starts):
                data = _json_loads(body[min(starts) : end + 1])
            if data is not _MISSING:
                problems.append("text around the JSON")
        if data is _MISSING:
            items, total = self._salvage(body, problems)
        elif isinstance(data, dict):
            problems.append("a single object, not a list")
            well_formed = False
            items = [data]
        elif isinstance(data, list):
            items = data
        else:
            problems.append(f"JSON {type(data).__name__}, not a list of objects")
            well_formed = False
            items = []

        if data is not _MISSING:  # (salvage counted its chunks: it reads only the first MAX_OBJECTS)
            total = len(items)
        raw: list[tuple[str, tuple[float, ...], str | None]] = []
        for i, item in enumerate(items[:MAX_OBJECTS]):  # past the cap only counted
            obj = self._read_item(i, item, problems)
            if obj is None:
                well_formed = False
            elif obj[0] == "bad-label":
                well_formed = False
                raw.append(obj[1])
            else:
                raw.append(obj)
        boxes, points, labels, objects, all_kept = objects_to_pixels(raw, frame, problems, total)
        if not raw and not (isinstance(data, list) and not data):
            problems.append("no box found")
        return ParsedAnswer(boxes, points, labels, None, None, well_formed and all_kept, problems, objects)

    @staticmethod
    def _read_item(i: int, item: Any, problems: list[str]):
        """One JSON item -> ``(kind, coords, label)``; ``None`` if unusable; ``("bad-label", obj)``."""
        if not isinstance(item, dict):
            problems.append(f"item {i} is {type(item).__name__}, not an object; ignored")
            return None
        for key, kind, n in (("bbox_2d", "box", 4), ("point_2d", "point", 2)):  # noqa: B007 (kind: after break)
            if key in item:
                value = item[key]
                # type() rather than isinstance: JSON gives exactly int/float, and bool is not a number here
                if not (
                    type(value) is list and len(value) == n and all(type(v) in (int, float) for v in value)
                ):
                    problems.append(f"item {i}: {key} is not {n} numbers; ignored")
                    return None
                try:
                    coords = tuple(map(float, value))
                except OverflowError:  # a JSON int too large for a float
                    coords = tuple(_to_float(v) for v in value)
                break
        else:
            problems.append(f"item {i} has neither bbox_2d nor point_2d; ignored")
            return None
        label = item.get("label")
        if label is None or isinstance(label, str):
            return kind, coords, None if label is None else clean_label(label)
        problems.append(f"item {i}: label is {type(label).__name__}, not str")
        return "bad-label", (kind, coords, clean_label(str(label)))

    @staticmethod
    def _salvage(body: str, problems: list[str]) -> tuple[list[dict], int]:
        """Invalid JSON: read each complete ``{...}`` chunk on its own.

        Returns ``(items, total)``: the first ``MAX_OBJECTS`` chunks read, and how many there are.
        """
        chunks = _OBJECT_CHUNK_RE.findall(body)
        items: list[dict] = []
        for chunk in chunks[:MAX_OBJECTS]:
            obj = _json_loads(chunk)
            if not isinstance(obj, dict):
                obj = {}
                coords = _SALVAGE_COORDS_RE.search(chunk)
                if coords is not None:
                    nums = NUMBER_RE.findall(coords.group(2))
                    obj[coords.group(1)] = [float(n) for n in nums]
                label = _SALVAGE_LABEL_RE.search(chunk)
                if label is not None:
                    obj["label"] = label.group(1)
            items.append(obj)
        problems.append(f"not valid JSON; salvaged {len(chunks)} object(s) from complete {{...}} chunks")
        return items, len(chunks)

    def write(
        self,
        *,
        boxes=None,
        labels=None,
        points=None,
        count=None,
        text=None,
        frame=None,
        decimals: int | None = None,
    ) -> str:
        """A one-line JSON list with integer coordinates (as the model writes), clamped to the resized image.

        ``decimals=k`` writes coordinates rounded to k decimals instead (still well-formed): the
        answer then maps back to the original pixels to within ``10**-k`` of a unit, free of the
        integer rounding that costs a box of a few pixels its IoU > 0.95 (see
        ``PerceptionEnv.oracle_answer(exact=True)``).
        """
        arr, labels, kind = as_objects(boxes, points, labels)
        hi = np.inf if frame is None else np.tile(np.asarray(frame.extent), arr.shape[1] // 2)
        if decimals is None:
            units = to_answer_ints(arr, frame, 0, hi)
        else:
            units = to_answer_decimals(arr, frame, 0, hi, decimals)
        key = "bbox_2d" if kind == "box" else "point_2d"
        out = []
        for coords, lab in zip(units.tolist(), labels):
            obj: dict[str, Any] = {key: coords}
            if lab is not None:
                obj["label"] = lab
            out.append(obj)
        return json.dumps(out, ensure_ascii=False)
