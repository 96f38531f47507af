"""Answer formats: how a model writes boxes, points, counts and text, and how we read them back.

Every format turns a free-text answer into a :class:`ParsedAnswer` whose boxes
and points are in *pixels of the original image*, whatever frame the answer
used (see :mod:`perception_env.frames`), and writes the perfect (oracle) answer
for given targets.

=====================  =====================================================  ================
name                   what the model writes                                  frame
=====================  =====================================================  ================
``qwen2-vl``           ``<|object_ref_start|>dog<|object_ref_end|>``          relative-1000
                       ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``
``qwen2.5-vl``         ``[{"bbox_2d": [x1,y1,x2,y2], "label": "dog"}]``       resized-pixels
                       (or ``"point_2d": [x, y]``), optionally in ```json
``qwen2-vl-points``    ``<|object_ref_start|>dog<|object_ref_end|>(x,y),...``  relative-1000
``number``             ``7``                                                  none
``text``               the page text                                          none
=====================  =====================================================  ================

Parsing never raises, for any input. It is tolerant (it reads what it can) and
separately reports ``well_formed`` (the answer follows the format exactly;
drives the paper's format reward) and ``problems`` (what was off and what was
done about it). Degenerate coordinates have one defined treatment, the same
for every format (:func:`_objects_to_pixels`):

* NaN / inf coordinate       -> object dropped (and the answer is not well-formed)
* inverted box (x1 > x2 ...) -> corners swapped
* outside the image          -> clipped to ``[0, W] x [0, H]`` (only when a frame is given)
* zero area after clipping   -> kept (it scores IoU 0)
* more than ``MAX_OBJECTS``  -> the first ``MAX_OBJECTS`` are kept (bounds scoring time); the
                               problem names how many the answer held, and it is not well-formed

How a chat model ends an answer is accepted by every format: a trailing run of
stop tokens (:data:`STOP_TOKENS`, ``<|im_end|>`` / ``<|endoftext|>``, as a
decoder keeps them with ``skip_special_tokens=False``), repeated or with white
space among and after them, is removed before parsing. A stop token followed
by anything else ends nothing: the text stays in the answer, counts as extra
text (OCR: as characters of the transcription) and the answer is not well-formed.

Parsing takes time linear in the answer's length, whatever it holds (timed on
worst-case answers up to 1 MB in tests/test_formats_worst_case.py): where a
regular expression could backtrack over a run it is possessive or bounded, and
fences, stop tokens and bare numbers are found with ``str`` methods.

Every object has both a box and a point: a box's point is its centre, a
point's box is the zero-area box ``[x, y, x, y]``. Problems name objects by
their 0-based position in the answer's reading order.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception_env.frames import CoordinateFrame

MAX_OBJECTS = 1000  # objects read per answer; more are ignored (noted) to bound matching time
MAX_NUMBER_DIGITS = 30  # a longer digit run is not a count (and int() would be slow / refuse it)
_SNIPPET = 40  # characters of offending text quoted in a problem
_MAX_LABEL = 1000  # characters in a label; a longer run of text is not a label
# Tokens a chat model ends its answer with (agents.policies.qwen_vl stops generation on the same two).
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")

# A number as a model may write it: ints, floats, exponents, signs, nan/inf (ASCII only: under plain
# (?i), "ınf" with a dotless i matches and float() then refuses it).
_NUM = r"(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?ai:nan|inf(?:inity)?))"
_PAIR = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_BOX = rf"{_PAIR}\s*,\s*{_PAIR}"
_BOX_RE = re.compile(_BOX)
_BOX_FULL_RE = re.compile(rf"\s*{_BOX}\s*")
_UINT_RE = re.compile(r"[0-9]+")
_NUM_RE = re.compile(_NUM)

REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
# A label may not contain "<|" (so a missing ref end cannot swallow the boxes after it);
# bounded so that many unterminated refs cost linear, not quadratic, time.
_REF = rf"<\|object_ref_start\|>(?P<label>(?:(?!<\|).){{0,{_MAX_LABEL}}}?)<\|object_ref_end\|>"

# The coordinates of a bare box / point are the last 4 / 2 groups of these (m.groups()[-4:], [-2:]).
_QWEN2_TOKEN_RE = re.compile(
    rf"(?P<ref>{_REF})"
    r"|(?P<box><\|box_start\|>(?P<inner>(?:(?!<\|).){0,1000}?)<\|box_end\|>)"
    rf"|(?P<bare>{_BOX})",
    re.DOTALL,
)
_POINTS_TOKEN_RE = re.compile(rf"(?P<ref>{_REF})|(?P<point>{_PAIR})", re.DOTALL)


# --------------------------------------------------------------------------- result
@dataclass
class ParsedAnswer:
    """What was read from one answer.

    ``boxes`` ``[N, 4]`` and ``points`` ``[N, 2]`` are float64 in ORIGINAL-image
    pixels (converted from the answer's frame), one row per kept object, in
    reading order; ``labels`` has N entries (``None`` where the answer gave none).
    ``count`` is set by the ``number`` format, ``text`` by the ``text`` format.
    ``objects`` lists every object read, in answer units, kept or not.
    """

    boxes: np.ndarray
    points: np.ndarray
    labels: list[str | None]
    count: int | None = None
    text: str | None = None
    well_formed: bool = False
    problems: list[str] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list)

    @classmethod
    def empty(
        cls, *, well_formed: bool = False, problems: list[str] | None = None, **kw: Any
    ) -> ParsedAnswer:
        return cls(
            np.zeros((0, 4)), np.zeros((0, 2)), [], well_formed=well_formed, problems=problems or [], **kw
        )

    def __len__(self) -> int:
        return len(self.boxes)

    def to_info(self) -> dict:
        """JSON-friendly view (pixels rounded to 0.01 px). ``count`` is left out when no number was read:
        a key whose type changes with the answer (an int, or None) breaks Gymnasium's vector envs, which
        batch each info key into an array typed by the first env's value; an absent key is masked."""
        info = {
            "well_formed": bool(self.well_formed),
            "problems": list(self.problems),
            "boxes": np.round(self.boxes, 2).tolist(),
            "points": np.round(self.points, 2).tolist(),
            "labels": list(self.labels),
            "count": self.count,
            "text": self.text,
            "objects": self.objects,
        }
        if self.count is None:
            del info["count"]
        return info


def _snippet(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def _objects_to_pixels(
    raw: list[tuple[str, tuple[float, ...], str | None]],
    frame: CoordinateFrame | None,
    problems: list[str],
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str | None], list[dict], bool]:
    """Answer-unit objects -> pixel boxes/points, applying the module's degenerate-coordinate rules.

    ``raw`` holds ``(kind, coords, label)`` with kind ``"box"`` (4 coords) or
    ``"point"`` (2 coords); ``total`` is how many objects the answer held
    (default ``len(raw)``; a parser may stop collecting after ``MAX_OBJECTS``).
    Returns ``boxes, points, labels, objects, all_kept`` (False when an object
    was dropped: for a NaN/inf coordinate, or past ``MAX_OBJECTS``).
    """
    total = len(raw) if total is None else total
    all_kept = total <= MAX_OBJECTS
    if not all_kept:
        problems.append(f"{total} objects: only the first {MAX_OBJECTS} are read")
        raw = raw[:MAX_OBJECTS]
    objects = [
        {"kind": kind, "coords": [float(c) for c in coords], "label": label, "prediction": None}
        for kind, coords, label in raw
    ]
    for obj in objects:  # JSON has no NaN/inf: show them as strings
        obj["coords"] = [c if math.isfinite(c) else str(c) for c in obj["coords"]]
    # Plain Python per object: answers hold few objects, and numpy's per-call overhead
    # would dominate (grounding answers are scored >10k/s); 1000 objects still take ~1 ms.
    sx, sy = (1.0, 1.0) if frame is None else (frame.scale_x, frame.scale_y)
    width, height = (None, None) if frame is None else (float(frame.image_width), float(frame.image_height))
    boxes: list[list[float]] = []
    labels: list[str | None] = []
    for i, (kind, c, label) in enumerate(raw):
        x1, y1, x2, y2 = (c[0], c[1], c[2], c[3]) if kind == "box" else (c[0], c[1], c[0], c[1])
        x1, y1, x2, y2 = x1 / sx, y1 / sy, x2 / sx, y2 / sy  # answer units -> pixels
        if not math.isfinite(x1 + y1 + x2 + y2):  # inf - inf is NaN, so this catches every case
            problems.append(f"object {i}: NaN/inf coordinate, dropped")
            all_kept = False
            continue
        if x1 > x2 or y1 > y2:
            problems.append(f"object {i}: inverted box, corners swapped")
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        if width is not None:
            clipped = (
                min(max(x1, 0.0), width),
                min(max(y1, 0.0), height),
                min(max(x2, 0.0), width),
                min(max(y2, 0.0), height),
            )
            if clipped != (x1, y1, x2, y2):
                problems.append(
                    f"object {i}: outside the {frame.image_width}x{frame.image_height} image, clipped"
                )
                x1, y1, x2, y2 = clipped
            if kind == "box" and (x2 <= x1 or y2 <= y1):
                problems.append(f"object {i}: zero-area box (kept; scores IoU 0)")
        objects[i]["prediction"] = len(boxes)
        boxes.append([x1, y1, x2, y2])
        labels.append(label)
    arr = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    points = (arr[:, :2] + arr[:, 2:]) / 2.0
    return arr, points, labels, objects, all_kept


def _clean_label(label: str) -> str | None:
    label = " ".join(label.split())
    return label or None


# The trailing run of stop tokens and white space, matched at the start of the REVERSED answer: anchored
# and possessive, so it never backtracks (a regex searching forward for "run, then end of text" retries
# from every stop token: quadratic in their number).
_REVERSED_STOP_RUN_RE = re.compile("(?:" + "|".join(re.escape(t[::-1]) for t in STOP_TOKENS) + r"|\s)*+")


def strip_stop_tokens(answer: str) -> str:
    """``answer`` cut at the first stop token of its trailing run of :data:`STOP_TOKENS` and white space.

    ``"7<|im_end|>"`` -> ``"7"``; ``"7 <|im_end|>\n<|endoftext|><|endoftext|>"`` -> ``"7 "``; a stop
    token followed by other text is not trailing and stays. Linear in ``len(answer)``.
    """
    if not answer.rstrip().endswith(STOP_TOKENS):  # the common case: no copy reversed
        return answer
    tail = answer[len(answer) - _REVERSED_STOP_RUN_RE.match(answer[::-1]).end() :]
    return answer[: len(answer) - len(tail.lstrip())]  # white space before the first token is the answer's


def _first_stop_token(text: str) -> str | None:
    """The stop token that occurs first in ``text`` (None when there is none)."""
    if not any(token in text for token in STOP_TOKENS):  # the common case, without building a list
        return None
    return min((text.find(t), t) for t in STOP_TOKENS if t in text)[1]


# --------------------------------------------------------------------------- base
class AnswerFormat(ABC):
    """One way of writing an answer. Subclasses set ``name``, ``frame_name`` and ``produces``."""

    name: str
    frame_name: str  # "relative-1000" | "resized-pixels" | "none"
    produces: str  # "boxes" | "points" | "count" | "text": what a well-formed answer carries
    # Whether a well-formed answer may hold non-integer coordinates (then ``write`` takes ``decimals``).
    fractional_coordinates: bool = False

    def parse(self, answer: Any, frame: CoordinateFrame | None = None) -> ParsedAnswer:
        """Read ``answer``; never raises. Non-``str`` input gives an empty, not-well-formed result.

        ``frame`` maps answer units to original pixels; ``None`` takes the
        numbers as pixels already and skips clipping (the image size is unknown).
        The answer's trailing stop tokens are removed first (:func:`strip_stop_tokens`);
        a stop token with text after it makes the answer not well-formed.
        """
        if not isinstance(answer, str):
            return ParsedAnswer.empty(problems=[f"answer is {type(answer).__name__}, not str"])
        answer = strip_stop_tokens(answer)
        parsed = self._parse(answer, frame)
        stop = _first_stop_token(answer)
        if stop is not None:
            parsed.problems.insert(0, f"text after the stop token {stop}: it counts as extra text")
            parsed.well_formed = False
        return parsed

    @abstractmethod
    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer: ...

    @abstractmethod
    def write(
        self,
        *,
        boxes: np.ndarray | None = None,
        labels: Sequence[str | None] | None = None,
        points: np.ndarray | None = None,
        count: int | None = None,
        text: str | None = None,
        frame: CoordinateFrame | None = None,
    ) -> str:
        """The perfect answer for these targets (pixels of the original image), in this format."""

    def make_frame(self, width: int, height: int, **resize_kwargs: Any) -> CoordinateFrame | None:
        """The frame this format's answers use for a ``width`` x ``height`` image (None: no coordinates).

        ``resize_kwargs`` (``min_pixels``, ``max_pixels``) go to :meth:`CoordinateFrame.resized_pixels`.
        """
        if self.frame_name == "relative-1000":
            return CoordinateFrame.relative_1000(width, height)
        if self.frame_name == "resized-pixels":
            return CoordinateFrame.resized_pixels(width, height, **resize_kwargs)
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, frame={self.frame_name!r})"


def _as_objects(boxes, points, labels) -> tuple[np.ndarray, list[str | None], str]:
    """Writer input -> ``([K, 4] or [K, 2] pixels, labels, kind)``."""
    if boxes is not None and len(np.asarray(boxes)):
        arr, kind = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), "box"
    elif points is not None:
        arr, kind = np.asarray(points, dtype=np.float64).reshape(-1, 2), "point"
    else:
        arr, kind = np.zeros((0, 4)), "box"
    labels = list(labels) if labels is not None else [None] * len(arr)
    if len(labels) != len(arr):
        raise ValueError(f"{len(arr)} objects but {len(labels)} labels")
    return arr, labels, kind


def _to_answer_ints(
    arr: np.ndarray, frame: CoordinateFrame | None, lo: float, hi: np.ndarray | float
) -> np.ndarray:
    units = arr if frame is None else frame.from_pixels(arr)
    return np.clip(np.rint(units), lo, hi).astype(np.int64)


def _to_answer_decimals(arr: np.ndarray, frame: CoordinateFrame | None, lo: float, hi, decimals: int):
    units = arr if frame is None else frame.from_pixels(arr)
    return np.round(np.clip(units, lo, hi), decimals)


# --------------------------------------------------------------------------- qwen2-vl
_QWEN2_TOKENS = (REF_START, REF_END, BOX_START, BOX_END)
_LABEL_SEPARATORS = " \t\r\n\f\v,;:"  # text between objects that names nothing


def _has_qwen2_tokens(answer: str) -> bool:
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
    if len(core) > _MAX_LABEL:
        return previous, text
    return _clean_label(core), ""


def _stripped_tokens_problem(what: str) -> str:
    return (
        f"{what} tokens missing (no {REF_START}/{BOX_START}: decoded with skip_special_tokens=True?); "
        f"read without them, the text before each object as its label"
    )


def _box_token_numbers(inner: str, problems: list[str]) -> tuple[tuple[str, ...] | None, bool]:
    """The 4 numbers inside a box token (None if it holds no box), and whether it holds exactly them."""
    coords = _BOX_FULL_RE.fullmatch(inner) or _BOX_RE.search(inner)
    if coords is None:
        problems.append(f"box token {_snippet(inner)} holds no (x1,y1),(x2,y2); ignored")
        return None, False
    if coords.re is not _BOX_FULL_RE:
        problems.append(f"box token {_snippet(inner)} has extra text")
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


def _read_qwen2(answer: str, frame: CoordinateFrame | None, kind: str) -> ParsedAnswer:
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
    tokens_missing = not _has_qwen2_tokens(answer)
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
            label = _clean_label(m.group("label"))
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
        problems.append(f"unparsed text {_snippet(rest)}")
        well_formed = False
    pixel_boxes, points, labels, objects, all_kept = _objects_to_pixels(raw, frame, problems, total)
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
        arr, labels, kind = _as_objects(boxes, points, labels)
        if kind == "point":
            arr = np.concatenate([arr, arr], axis=1)
        ints = _to_answer_ints(arr, frame, 0, 999)
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
        arr, labels, kind = _as_objects(boxes, points, labels)
        if kind == "box":
            arr = (arr[:, :2] + arr[:, 2:]) / 2.0
        ints = _to_answer_ints(arr, frame, 0, 999)
        return _write_qwen2([f"({x},{y})" for x, y in ints.tolist()], labels, separator=",")


# --------------------------------------------------------------------------- qwen2.5-vl
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

    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer:
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
        boxes, points, labels, objects, all_kept = _objects_to_pixels(raw, frame, problems, total)
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
            return kind, coords, None if label is None else _clean_label(label)
        problems.append(f"item {i}: label is {type(label).__name__}, not str")
        return "bad-label", (kind, coords, _clean_label(str(label)))

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
                    nums = _NUM_RE.findall(coords.group(2))
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
        arr, labels, kind = _as_objects(boxes, points, labels)
        hi = np.inf if frame is None else np.tile(np.asarray(frame.extent), arr.shape[1] // 2)
        if decimals is None:
            units = _to_answer_ints(arr, frame, 0, hi)
        else:
            units = _to_answer_decimals(arr, frame, 0, hi, decimals)
        key = "bbox_2d" if kind == "box" else "point_2d"
        out = []
        for coords, lab in zip(units.tolist(), labels):
            obj: dict[str, Any] = {key: coords}
            if lab is not None:
                obj["label"] = lab
            out.append(obj)
        return json.dumps(out, ensure_ascii=False)


# --------------------------------------------------------------------------- number, text
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
# (?ai:...): ASCII-only case folding; under plain re.IGNORECASE "ſeven" (long s) matched "seven" and
# _NUMBER_WORDS["ſeven"] raised KeyError. The leading lookahead lets the search skip, at C speed, every
# character that cannot start a number (~4x faster on 1 MB of punctuation; same matches).
_COUNT_RE = re.compile(
    r"(?=[-0-9A-Za-z])(?:(?<![0-9.])(-?[0-9]+)|\b(?ai:(" + "|".join(_NUMBER_WORDS) + r"))\b)"
)


def _is_just_a_number(answer: str) -> bool:
    """``answer`` is one unsigned ASCII integer or number word, with white space and one final period.

    ``str`` methods, linear: the regex ``\\s*(?:[0-9]+|...)\\s*\\.?\\s*`` it replaces backtracked
    quadratically over ``"7" + n spaces + "!"`` (14 s at n = 30,000).
    """
    core = answer.strip()
    if core.endswith("."):
        core = core[:-1].rstrip()
    return core.isascii() and (core.isdigit() or core.lower() in _NUMBER_WORDS)


class NumberFormat(AnswerFormat):
    """A count. Reads the first integer (ASCII digits, optional minus) or English word zero..twenty.

    Well-formed: the answer is just that number (surrounding whitespace and
    one trailing period allowed), e.g. ``"7"``, ``" seven."``. ``"3.5"``
    reads 3, not well-formed.
    """

    name = "number"
    frame_name = "none"
    produces = "count"

    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer:
        m = _COUNT_RE.search(answer)
        if m is None:
            return ParsedAnswer.empty(problems=["no number found"])
        problems: list[str] = []
        if m.group(1) is not None:
            digits = m.group(1)
            if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
                return ParsedAnswer.empty(problems=[f"number with {len(digits)} digits is not a count"])
            count = int(digits)
        else:
            count = _NUMBER_WORDS[m.group(2).lower()]
        well_formed = _is_just_a_number(answer)
        if not well_formed:
            problems.append(f"answer is not just a number; read {count}")
        return ParsedAnswer.empty(well_formed=well_formed, problems=problems, count=count)

    def write(self, *, boxes=None, labels=None, points=None, count=None, text=None, frame=None) -> str:
        """``str(count)``; without a count, the number of boxes (or points) given."""
        if count is None:
            arr, _, _ = _as_objects(boxes, points, labels)
            count = len(arr)
        return str(int(count))


class TextFormat(AnswerFormat):
    """Plain text (OCR). The text is kept verbatim; well-formed when it is not blank."""

    name = "text"
    frame_name = "none"
    produces = "text"

    def _parse(self, answer: str, frame: CoordinateFrame | None) -> ParsedAnswer:
        well_formed = bool(answer.strip())
        return ParsedAnswer.empty(
            well_formed=well_formed, problems=[] if well_formed else ["empty answer"], text=answer
        )

    def write(self, *, boxes=None, labels=None, points=None, count=None, text=None, frame=None) -> str:
        return "" if text is None else str(text)


# --------------------------------------------------------------------------- registry
FORMATS: dict[str, AnswerFormat] = {
    f.name: f
    for f in (Qwen2VLFormat(), Qwen25VLFormat(), Qwen2VLPointsFormat(), NumberFormat(), TextFormat())
}


def get_format(name: str | AnswerFormat) -> AnswerFormat:
    """The format called ``name`` (an :class:`AnswerFormat` is returned as is)."""
    if isinstance(name, AnswerFormat):
        return name
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown answer format {name!r}; known: {', '.join(FORMATS)}") from None


__all__ = [
    "FORMATS",
    "MAX_OBJECTS",
    "STOP_TOKENS",
    "AnswerFormat",
    "NumberFormat",
    "ParsedAnswer",
    "Qwen25VLFormat",
    "Qwen2VLFormat",
    "Qwen2VLPointsFormat",
    "TextFormat",
    "get_format",
    "strip_stop_tokens",
]
