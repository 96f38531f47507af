"""The scorers' common return type, and helpers they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception_env.data.sample import Sample
from perception_env.formats import AnswerFormat, ParsedAnswer, get_format
from perception_env.frames import CoordinateFrame


@dataclass(kw_only=True)
class RewardResult:
    """One answer's score and how it came about.

    ``reward`` is finite, in ``[0, max_reward]``. ``components`` are the terms
    (and a few diagnostics such as counts) as floats. ``matching`` lists the
    prediction/target pairs considered, as dicts with ``pred`` and ``target``
    (indices into ``parsed.boxes`` / the sample's targets), ``iou`` or
    ``distance``, ``label_ok`` and ``tp`` (whether the pair earned reward).
    ``unmatched_predictions`` / ``unmatched_targets`` are the indices that
    earned nothing. ``reason`` says, in words, why a score is low when the
    answer could not be (fully) read; ``None`` when nothing was off.
    """

    reward: float
    max_reward: float
    components: dict[str, float] = field(default_factory=dict)
    matching: list[dict] = field(default_factory=list)
    unmatched_predictions: list[int] = field(default_factory=list)
    unmatched_targets: list[int] = field(default_factory=list)
    parsed: ParsedAnswer
    reason: str | None = None

    @classmethod
    def from_breakdown(
        cls, reward: float, max_reward: float, breakdown: dict, parsed: ParsedAnswer, reason: str | None
    ) -> RewardResult:
        """The result of a task reward's ``(reward, breakdown)``: ``breakdown["components"]`` and, where the
        task matches objects, its ``matching``, ``unmatched_predictions`` and ``unmatched_targets``."""
        return cls(
            reward=reward,
            max_reward=max_reward,
            components=breakdown["components"],
            matching=breakdown.get("matching", []),
            unmatched_predictions=breakdown.get("unmatched_predictions", []),
            unmatched_targets=breakdown.get("unmatched_targets", []),
            parsed=parsed,
            reason=reason,
        )

    def to_info(self) -> dict:
        """JSON-friendly dict for ``info`` (numpy scalars/arrays -> floats/lists)."""
        return jsonable(
            {
                "reward": self.reward,
                "max_reward": self.max_reward,
                "reward_components": self.components,
                "matching": self.matching,
                "unmatched_predictions": self.unmatched_predictions,
                "unmatched_targets": self.unmatched_targets,
                "parsed": self.parsed.to_info(),
                "reason": self.reason,
            }
        )


def jsonable(x: Any) -> Any:
    """Recursively convert numpy types (and tuples) to plain Python for ``json.dumps``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    return x


def read_answer(
    answer: str, sample: Sample, fmt: AnswerFormat | str, frame: CoordinateFrame | None
) -> tuple[AnswerFormat, ParsedAnswer]:
    """The format object and ``answer`` parsed in ``frame`` (the format's default for the sample when None)."""
    fmt = get_format(fmt)
    if frame is None:
        frame = fmt.make_frame(sample.width, sample.height)
    return fmt, fmt.parse(answer, frame)


def why(parsed: ParsedAnswer, fallback: str | None = None) -> str | None:
    """A one-line reason from the parse problems (None when the answer was read cleanly)."""
    if parsed.problems:
        head = "; ".join(parsed.problems[:3])
        more = len(parsed.problems) - 3
        return head + (f"; and {more} more" if more > 0 else "")
    if not parsed.well_formed:
        return fallback or "answer is not well-formed"
    return fallback


def clamp(value: float, high: float) -> float:
    """``value`` clamped to ``[0, high]``; a non-finite value is a bug, so it raises."""
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite reward {value!r}")
    return float(min(max(value, 0.0), high))
