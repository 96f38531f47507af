"""What every answer format shares: the result of reading an answer (:class:`ParsedAnswer`), the one treatment
of degenerate coordinates (:func:`objects_to_pixels`), stop tokens, the writers' rounding, and the base class
(:class:`AnswerFormat`)."""

from __future__ import annotations

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
MAX_LABEL = 1000  # characters in a label; a longer run of text is not a label
# Tokens a chat model ends its answer with: every format strips them; agents.policies.qwen_vl stops on them.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")

# A number as a model may write it: ints, floats, exponents, signs, nan/inf (ASCII only: under plain
# (?i), "ınf" with a dotless i matches and float() then refuses it).
NUMBER_PATTERN = r"(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?ai:nan|inf(?:inity)?))"
PAIR_PATTERN = rf"\(\s*({NUMBER_PATTERN})\s*,\s*({NUMBER_PATTERN})\s*\)"
BOX_PATTERN = rf"{PAIR_PATTERN}\s*,\s*{PAIR_PATTERN}"
NUMBER_RE = re.compile(NUMBER_PATTERN)


# --------------------------------------------------------------------------- result
@dataclass
class ParsedAnswer:
    """What was read from one answer.

    ``boxes`` ``[N, 4]`` and ``points`` ``[N, 2]`` are float64 in ORIGINAL-image
    pixels (converted from the answer's frame), one row per kept object, in
    reading order; ``labels`` has N entries (``None`` where the answer gave none).
    ``count`` is set by the ``number`` format, ``text`` by the ``text`` format;
    ``values`` holds what a task's own format reads besides these (name -> JSON value).
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
    values: dict[str, Any] = field(default_factory=dict)

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
        if self.values:  # left out when empty, as ``count`` (a vector env masks an absent key)
            info["values"] = dict(self.values)
        return info


def snippet(text: str) -> str:
    """``text`` stripped, cut to ``_SNIPPET`` characters and quoted: an answer's text in a problem message."""
    text = text.strip()
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def objects_to_pixels(
    raw: list[tuple[str, tuple[float, ...], str | None]],
    frame: CoordinateFrame | None,
    problems: list[str],
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str | None], list[dict], bool]:
    """Answer-unit objects -> pixel boxes/points, applying the package's degenerate-coordinate rules.

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


def clean_label(label: str) -> str | None:
    """``label`` with its white space runs made single spaces; None if nothing is left."""
    label = " ".join(label.split())
    return label or None


# The trailing run of stop tokens and white space, matched at the start of the REVERSED answer: anchored
# and possessive, so it never backtracks (a regex searching forward for "run, then end of text" retries
# from every stop token: quadratic in their number).
_REVERSED_STOP_RUN_RE = re.compile("(?:" + "|".join(re.escape(t[::-1]) for t in STOP_TOKENS) + r"|\s)*+")


def strip_stop_tokens(answer: str) -> str:
    r"""``answer`` cut at the first stop token of its trailing run of :data:`STOP_TOKENS` and white space.

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


def as_objects(boxes, points, labels) -> tuple[np.ndarray, list[str | None], str]:
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


def to_answer_ints(
    arr: np.ndarray, frame: CoordinateFrame | None, lo: float, hi: np.ndarray | float
) -> np.ndarray:
    """Pixel coordinates ``arr`` in the answer's units (``frame``; None: pixels), rounded, in ``[lo, hi]``."""
    units = arr if frame is None else frame.from_pixels(arr)
    return np.clip(np.rint(units), lo, hi).astype(np.int64)


def to_answer_decimals(arr: np.ndarray, frame: CoordinateFrame | None, lo: float, hi, decimals: int):
    """Pixel coordinates ``arr`` in the answer's units (``frame``; None: pixels), clipped to ``[lo, hi]``,
    rounded to ``decimals``."""
    units = arr if frame is None else frame.from_pixels(arr)
    return np.round(np.clip(units, lo, hi), decimals)
