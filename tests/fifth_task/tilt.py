"""Tilt: how many degrees is the line in the image turned from horizontal? (0 to 180, counter-clockwise.)

Everything the task needs lives here, nothing in the package changed: its target field (``angle``, kept in
``Sample.targets``), its JSONL schema (``{"image": "a.png", "angle": 30}``), its answer format
(``degrees``: ``30°``, read into ``ParsedAnswer.values["angle"]``), its reward and its metrics.
"""

from __future__ import annotations

import math
import re

import numpy as np

from perception_env import PerceptionEnv
from perception_env.data.loaders.jsonl import RecordSchema
from perception_env.formats import AnswerFormat, ParsedAnswer
from perception_env.rewards import RewardResult
from perception_env.rewards.result import read_answer, why

# one number, optionally signed or decimal, then an optional degree sign or word; nothing else
_DEGREES_RE = re.compile(r"\s*([-+]?[0-9]{1,6}(?:\.[0-9]{1,6})?)\s*(?:°|deg(?:rees?)?)?\s*\.?\s*")


class DegreesFormat(AnswerFormat):
    """An angle in degrees: ``30°``, ``30 degrees`` or ``30``; it reads into ``values["angle"]``."""

    name = "degrees"
    frame_name = "none"
    produces = "angle"

    def _parse(self, answer: str, frame) -> ParsedAnswer:
        match = _DEGREES_RE.fullmatch(answer)
        if match is None:
            return ParsedAnswer.empty(problems=[f"not an angle in degrees: {answer.strip()[:40]!r}"])
        return ParsedAnswer.empty(well_formed=True, values={"angle": float(match.group(1))})

    def write(self, *, angle: float | None = None, frame=None, **unused) -> str:
        """``30°``; without an angle (the evaluation's "empty" answerer) the empty answer."""
        return "" if angle is None else f"{angle:g}°"


def _angle_record(record: dict, where) -> dict:
    """A JSONL line's target: ``angle``, a number of degrees in [0, 180)."""
    angle = record.get("angle")
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0 <= angle < 180:
        raise where.error(f"angle must be a number of degrees in [0, 180), got {angle!r:.40}")
    return {"targets": {"angle": float(angle)}}


TILT_SCHEMA = RecordSchema("tilt", ("angle",), _angle_record)


def angle_error(said: float, truth: float) -> float:
    """Degrees between two undirected lines: 0 to 90 (a line at 179° is 1° from one at 0°)."""
    difference = abs(said - truth) % 180.0
    return min(difference, 180.0 - difference)


def score_tilt(answer, sample, fmt="degrees", frame=None, config=None) -> RewardResult:
    """``1 - error / 90`` (1 for the exact angle, 0 for a perpendicular line or an unreadable answer)."""
    fmt, parsed = read_answer(answer, sample, fmt, frame)
    said = parsed.values.get("angle")
    if said is None:
        return RewardResult(
            reward=0.0, max_reward=1.0, components={"error": 90.0}, parsed=parsed, reason=why(parsed)
        )
    error = angle_error(said, sample.targets["angle"])
    return RewardResult(reward=1.0 - error / 90.0, max_reward=1.0, components={"error": error}, parsed=parsed)


class TiltEnv(PerceptionEnv):
    """Say how far the line is turned from horizontal, in degrees."""

    task = "tilt"
    env_id = "PerceptionR1Test/Tilt-v0"
    default_format = "degrees"
    formats = ("degrees",)
    default_prompts = {"degrees": "By how many degrees is the line turned from horizontal?"}
    scorer = staticmethod(score_tilt)
    jsonl_schema = TILT_SCHEMA  # its data: the sources jsonl and hf (no built-in data)
    max_answer_tokens = 8
    report_columns = (("within_5", "within 5°", "pct"), ("mean_error", "mean error °", "num"))

    def _prompt_fields(self, sample):
        return {}

    def _oracle_targets(self, sample):
        return {"angle": sample.targets["angle"]}

    def _is_success(self, result, sample):
        return result.components["error"] <= 5.0

    @classmethod
    def metrics(cls, records, samples, *, dataset=None, categories=None):
        """Mean error in degrees (an unreadable answer counts 90) and the share within 5 degrees."""
        errors = []
        for record, sample in zip(records, samples):
            said = ((record.get("parsed") or {}).get("values") or {}).get("angle")
            errors.append(90.0 if said is None else angle_error(said, sample.targets["angle"]))
        return {"mean_error": float(np.mean(errors)), "within_5": float(np.mean(np.array(errors) <= 5.0))}


def line_image(angle: float, size: int = 48) -> np.ndarray:
    """A white ``[size, size, 3]`` uint8 image with a black line through its centre at ``angle`` degrees."""
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    t = np.linspace(-0.45 * size, 0.45 * size, 4 * size)
    xs = np.rint(size / 2 + t * math.cos(math.radians(angle))).astype(int)
    ys = np.rint(size / 2 - t * math.sin(math.radians(angle))).astype(int)  # y down: counter-clockwise
    image[ys, xs] = 0
    return image
