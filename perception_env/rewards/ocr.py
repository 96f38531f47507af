"""OCR reward: 1 - normalised Levenshtein distance, after collapsing whitespace."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from perception_env.data.sample import Sample
from perception_env.formats import AnswerFormat
from perception_env.frames import CoordinateFrame
from perception_env.rewards.result import RewardResult, clamp, read_answer, why


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (spaces, newlines, tabs) -> one space; ends stripped."""
    return " ".join(text.split())


def ocr_reward(pred: str | None, gt: str) -> tuple[float, dict]:
    """``max(0, 1 - Levenshtein(pred, gt) / max(len(pred), len(gt)))`` on whitespace-collapsed text.

    In ``[0, 1]``; both empty -> 1; ``pred=None`` (no text read) counts as ``""``.
    Edit distance counts characters (unit-cost insert/delete/substitute).
    """
    p, g = collapse_whitespace(pred or ""), collapse_whitespace(gt)
    longest = max(len(p), len(g))
    distance = Levenshtein.distance(p, g)
    reward = 1.0 - distance / longest if longest else 1.0
    return clamp(reward, 1.0), {
        "components": {
            "edit_distance": float(distance),
            "normalized_edit_distance": distance / longest if longest else 0.0,
        }
    }


def score_ocr(
    answer: str,
    sample: Sample,
    fmt: AnswerFormat | str = "text",
    frame: CoordinateFrame | None = None,
    config: object | None = None,
) -> RewardResult:
    """Score an OCR answer against ``sample.text`` (``frame``/``config`` unused: kept for a uniform signature)."""
    fmt, parsed = read_answer(answer, sample, fmt, frame)
    reward, b = ocr_reward(parsed.text, sample.text)
    b["components"] = {"format": 1.0 if parsed.well_formed else 0.0, **b["components"]}
    reason = why(parsed, None if parsed.text is not None else f"format {fmt.name!r} gives no text")
    if reason is None and reward < 1.0:
        reason = (
            f"{int(b['components']['edit_distance'])} character edits from the truth "
            f"({b['components']['normalized_edit_distance']:.0%} of the longer text)"
        )
    return RewardResult.from_breakdown(reward, 1.0, b, parsed, reason)
