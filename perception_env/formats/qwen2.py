"""Qwen2-VL's answers: ref and box tokens (``qwen2-vl``) and points after a ref (``qwen2-vl-points``), in
``[0, 1000)`` relative units; answers decoded without their special tokens are read but not well-formed."""

from __future__ import annotations

import re

import numpy as np

from perception_env.formats.base import (
    BOX_PATTERN,
    MAX_LABEL,
    MAX_OBJECTS,
    PAIR_PATTERN,
    AnswerFormat,
    ParsedAnswer,
    as_objects,
    clean_label,
    objects_to_pixels,
    snippet,
    to_answer_ints,
)
from perception_env.frames import CoordinateFrame

_BOX_RE = re.compile(BOX_PATTERN)
_BOX_FULL_RE = re.compile(rf"\s*{BOX_PATTERN}\s*")
_UINT_RE = re.compile(r"[0-9]+")

REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
# A label may not contain "<|" (so a missing ref end cannot swallow the boxes after it);
# bounded so that many unterminated refs cost linear, not quadratic, time.
_REF = rf"<\|object_ref_start\|>(?P<label>(?:(?!<\|).){{0,{MAX_LABEL}}}?)<\|object_ref_end\|>"

# The coordinates of a bare box / point are the last 4 / 2 groups of these (m.groups()[-4:], [-2:]).
_QWEN2_TOKEN_RE = re.compile(
    rf"(?P<ref>{_REF})"
    r"|(?P<box><\|box_start\|>(?P<inner>(?:(?!<\|).){0,1000}?)<\|box_end\|>)"
    rf"|(?P<bare>{BOX_PATTERN})",
    re.DOTALL,
)
_POINTS_TOKEN_RE = re.compile(rf"(?P<ref>{_REF})|(?P<point>{PAIR_PATTERN})", re.DOTALL)


_QWEN2_TOKENS = (REF_START, REF_END, BOX_START, BOX_END)
_LABEL_SEPARATORS = " \t\r\n\f\v,;:"  # text between objects that names nothing


def has_qwen2_tokens(answer: str) -> bool:
    """Whether ``answer`` holds any Qwen2-VL ref/box token (``skip_special_tokens=True`` strips them all)."""
    return any(token in answer for token in _QWEN2_TOKENS)


def _label_from_text(text: str, previous: str | None) -> tuple[str | None, str]:
    """Token-stripped answers: ``(label, unread text)`` from the text before an object.

    Separators alone (white space, ``,;:``) keep ``previous``, as a box after
    another box keeps its ref's label; text longer than a label is left unread.
    """
    core = text.strip(_LABEL_SEPARATORS)
    if not core:
        return previous, ""
    if len(core) > MAX_LABEL:
        return previous, text
    return clean_label(core), ""


def _stripped_tokens_problem(what: str) -> str:
    return (
        f"{what} tokens missing (no {REF_START}/{BOX_START}: decoded with skip_special_tokens=True?); "
        f"read without them, the text before each object as its label"
    )


def _box_token_numbers(inner: str, problems: list[str]) -> tuple[tuple[str, ...] | None, bool]:
    """The 4 numbers inside a box token (None if it holds no box), and whether it holds exactly them."""
    coords = _BOX_FULL_RE.fullmatch(inner) or _BOX_RE.search(inner)
    if coords is None:
        problems.append(f"box token {snippet(inner)} holds no (x1,y1),(x2,y2); ignored")
        return None, False
    if coords.re is not _BOX_FULL_RE:
        problems.append(f"box token {snippet(inner)} has extra text")
        return coords.groups(), False
    return coords.groups(), True


def _write_qwen2(objects: list[str], labels: list[str | None], separator: str = "") -> str:
    """Written objects back to back, a ref before each run of one label (``None``: an empty ref, read back as
    ``None``), ``separator`` between the objects of a run."""
    parts: list[str] = []
    previous: object = object()
    for text, label in zip(objects, labels):
        if label != previous:
            parts.append(f"{REF_START}{'' if label is None else label}{REF_END}")
            previous = label
        elif parts:
            parts.append(separator)
        parts.append(text)
    return "".join(parts)


# C901 kept: one pass over the grammar's tokens; its branches are the grammar's cases
def _read_qwen2(answer: str, frame: CoordinateFrame | None, kind: str) -> ParsedAnswer:  # noqa: C901
    """Both Qwen2-VL formats: refs then boxes (``kind="box"``, ``qwen2-vl``) or points (``"point"``).

    Their grammars differ in three places. A box belongs in box tokens: a bare ``(x1,y1),(x2,y2)`` is read
    but not well-formed, and when the answer holds no token at all (decoded with
    ``skip_special_tokens=True``) the text before every box is its label. A point is bare by definition:
    only text before it, in an answer without tokens, is a label that lost its ref tokens. Commas may
    separate points. Linear in ``len(answer)``: one pass of a bounded regex.
    """
    boxes = kind == "box"
    problems: list[str] = []
    raw: list[tuple[str, tuple[float, ...], str | None]] = []
    total = 0  # objects in the answer; raw keeps the first MAX_OBJECTS
    well_formed = True
    label: str | None = None
    ref_waiting: str | None = None  # a ref seen, no object after it yet
    tokens_missing = not has_qwen2_tokens(answer)
    noted = False  # the missing tokens (or a bare box) said, once
    leftover: list[str] = []
    pos = 0
    for m in (_QWEN2_TOKEN_RE if boxes else _POINTS_TOKEN_RE).finditer(answer):
        before = answer[pos : m.start()]
        pos = m.end()
        if tokens_missing and (boxes or before.strip(_LABEL_SEPARATORS)):  # the text before is the ref
            label, before = _label_from_text(before, label)
            if not boxes and not before and not noted:
                problems.append(_stripped_tokens_problem("ref"))
                noted, well_formed = True, False
        leftover.append(before)
        if m.group("ref") is not None:
            if ref_waiting is not None:
                problems.append(f"ref {ref_waiting!r} has no {kind}")
                well_formed = False
            label = clean_label(m.group("label"))
            ref_waiting = label or ""
            continue
        ref_waiting = None
        if not boxes:
            nums = m.groups()[-2:]
        elif m.group("box") is not None:
            nums, exact = _box_token_numbers(m.group("inner"), problems)
            well_formed = well_formed and exact
            if nums is None:
                continue
        else:  # a bare box
            if not noted:
                problems.append(
                    _stripped_tokens_problem("box")
                    if tokens_missing
                    else f"box written without {BOX_START}/{BOX_END} tokens"
                )
                noted = True
            well_formed = False
            nums = m.groups()[-4:]
        total += 1
        if total > MAX_OBJECTS:  # only counted: reading it would be wasted time
            continue
        if well_formed and not all(_UINT_RE.fullmatch(n) for n in nums):
            problems.append(f"non-integer coordinates {nums}")
            well_formed = False
        raw.append((kind, tuple(float(n) for n in nums), label))
    if ref_waiting is not None:
        problems.append(f"ref {ref_waiting!r} has no {kind}")
        well_formed = False
    leftover.append(answer[pos:])
    rest = "".join(leftover)
    if (rest if boxes else rest.replace(",", " ")).strip():
        problems.append(f"unparsed text {snippet(rest)}")
        well_formed = False
    pixel_boxes, points, labels, objects, all_kept = objects_to_pixels(raw, frame, problems, total)
    if not raw and answer.strip():
        problems.append(f"no {kind} found")
    return ParsedAnswer(pixel_boxes, points, labels, None, None, well_formed and all_kept, problems, objects)


class Qwen2VLFormat(AnswerFormat):
    """Qwen2-VL box tokens, coordinates in ``[0, 1000)`` relative to the image.

    Reads, in order: refs ``<|object_ref_start|>label<|object_ref_end|>``, box
    tokens ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` and bare ``(x1,y1),(x2,y2)``.
    Each box takes the label of the most recent ref (``None`` before any).
    Numbers may be floats, signed, with spaces; they are still read.

    Well-formed means exactly: the answer is a (possibly empty) sequence of
    groups ``[ref] box-token+`` separated only by whitespace, where every box
    token holds two ``(x,y)`` pairs of unsigned integers, every ref is followed
    by a box token, and no object was dropped. The empty answer is the
    well-formed "no objects" answer.

    An answer without any of these tokens, as decoding with ``skip_special_tokens=True``
    leaves it (``cross(85,156),(241,312)``), is read as if they were there: its boxes,
    each labelled by the text before it (separators alone keep the previous label). It is
    never well-formed, so it loses the format term (detection) and scores 0 for counting
    (the paper's rule), and ``problems`` says that the box tokens are missing.
    """

    name = "qwen2-vl"
    frame_name = "relative-1000"
    produces = "boxes"

    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer:
        return _read_qwen2(answer, frame, "box")

    def write(self, *, boxes=None, labels=None, points=None, count=None, text=None, frame=None) -> str:
        """Consecutive boxes with the same label share one ref; ints clamped to ``[0, 999]``.

        Points (when no boxes are given) are written as zero-size boxes ``(x,y),(x,y)``.
        A ``None`` label is written as an empty ref (read back as ``None``).
        """
        arr, labels, kind = as_objects(boxes, points, labels)
        if kind == "point":
            arr = np.concatenate([arr, arr], axis=1)
        ints = to_answer_ints(arr, frame, 0, 999)
        return _write_qwen2(
            [f"{BOX_START}({x1},{y1}),({x2},{y2}){BOX_END}" for x1, y1, x2, y2 in ints.tolist()], labels
        )


class Qwen2VLPointsFormat(AnswerFormat):
    """Points ``(x,y)`` in ``[0, 1000)`` relative to the image, for counting.

    Reads refs (as in ``qwen2-vl``) and ``(x,y)`` pairs; each point takes the
    most recent ref's label. Well-formed: only refs, pairs of unsigned integers,
    commas and whitespace, every ref followed by a point, no object dropped.
    The empty answer is the well-formed "no objects" answer.

    An answer without ref tokens but with text before its points, as decoding with
    ``skip_special_tokens=True`` leaves it (``dog(10,20),(30,40)``), is read as in
    ``qwen2-vl``: the text is the label, and the answer is not well-formed.
    """

    name = "qwen2-vl-points"
    frame_name = "relative-1000"
    produces = "points"

    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer:
        return _read_qwen2(answer, frame, "point")

    def write(self, *, boxes=None, labels=None, points=None, count=None, text=None, frame=None) -> str:
        """Consecutive points with the same label share one ref. Boxes are written as their centres."""
        arr, labels, kind = as_objects(boxes, points, labels)
        if kind == "box":
            arr = (arr[:, :2] + arr[:, 2:]) / 2.0
        ints = to_answer_ints(arr, frame, 0, 999)
        return _write_qwen2([f"({x},{y})" for x, y in ints.tolist()], labels, separator=",")
