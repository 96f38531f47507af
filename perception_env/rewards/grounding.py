"""Grounding reward: IoU of the first predicted box with the one target box, raised to a power."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_env.data.sample import Sample
from perception_env.formats import AnswerFormat
from perception_env.frames import CoordinateFrame
from perception_env.rewards.matching import single_iou
from perception_env.rewards.result import RewardResult, clamp, read_answer, why


@dataclass(frozen=True)
class GroundingRewardConfig:
    """``reward = format_weight * well_formed + IoU(first box, target) ** power``.

    The paper uses ``power=2`` (IoU squared) and a separate format reward;
    ``format_weight`` defaults to 0 so the reward is in ``[0, 1]``.
    """

    power: float = 2.0
    format_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.power > 0:
            raise ValueError(f"power must be > 0, got {self.power!r}")
        if self.format_weight < 0:
            raise ValueError("format_weight must be >= 0")

    @property
    def max_reward(self) -> float:
        return 1.0 + self.format_weight


def grounding_reward(pred_box, gt_box, power: float = 2.0) -> tuple[float, dict]:
    """``IoU(pred_box, gt_box) ** power`` in ``[0, 1]``; ``pred_box=None`` (nothing read) gives 0."""
    iou = 0.0 if pred_box is None else single_iou(pred_box, gt_box)
    return clamp(iou**power, 1.0), {"components": {"iou": iou, "iou_power": iou**power}}


def score_grounding(
    answer: str,
    sample: Sample,
    fmt: AnswerFormat | str = "qwen2-vl",
    frame: CoordinateFrame | None = None,
    config: GroundingRewardConfig | None = None,
) -> RewardResult:
    """Score the FIRST box of ``answer`` against the sample's one box (``sample.boxes[0]``).

    Raises ``ValueError`` only for a sample without a box (a dataset bug); never for the answer.
    """
    cfg = config or GroundingRewardConfig()
    if len(sample.boxes) == 0:
        raise ValueError(f"grounding sample {sample.sample_id!r} has no target box")
    fmt, parsed = read_answer(answer, sample, fmt, frame)
    gt = np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4)[0]
    pred = parsed.boxes[0] if len(parsed.boxes) else None
    iou_term, b = grounding_reward(pred, gt, cfg.power)
    wf = 1.0 if parsed.well_formed else 0.0
    b["components"] = {"format": wf, **b["components"], "n_pred": float(len(parsed.boxes))}
    if pred is None:
        b["unmatched_targets"] = [0]
    else:
        b["matching"] = [{"pred": 0, "target": 0, "iou": b["components"]["iou"], "tp": True}]
        b["unmatched_predictions"] = list(range(1, len(parsed.boxes)))
    reason = why(parsed, None if pred is not None else "no box found")
    if reason is None and len(parsed.boxes) > 1:
        reason = f"{len(parsed.boxes)} boxes given; only the first is scored"
    reward = clamp(cfg.format_weight * wf + iou_term, cfg.max_reward)
    return RewardResult.from_breakdown(reward, cfg.max_reward, b, parsed, reason)
