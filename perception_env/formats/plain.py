"""Answers without coordinates: a count (``number``: digits or an English number word) and text (``text``)."""

from __future__ import annotations

import re

from perception_env.formats.base import (
    MAX_NUMBER_DIGITS,
    AnswerFormat,
    ParsedAnswer,
    as_objects,
)
from perception_env.frames import CoordinateFrame

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
    r"""``answer`` is one unsigned ASCII integer or number word, with white space and one final period.

    ``str`` methods, linear: the regex ``\s*(?:[0-9]+|...)\s*\.?\s*`` it replaces backtracked
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
            arr, _, _ = as_objects(boxes, points, labels)
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
