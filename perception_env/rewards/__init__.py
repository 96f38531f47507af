"""Rewards: parse an answer, match it to the targets, score it. Pure numpy/scipy/rapidfuzz.

Per task, a pure reward on pixel arrays returning ``(reward, breakdown)`` and a
scorer ``score_<task>(answer, sample, fmt, frame=None, config=None) -> RewardResult``
that never raises for any answer and keeps the reward finite in ``[0, max_reward]``. A task's class names
its scorer (``PerceptionEnv.scorer``; the tasks are listed in :mod:`perception_env.tasks`).
"""

from perception_env.rewards.counting import (
    CountingRewardConfig,
    counting_exact_reward,
    counting_points_reward,
    counting_ratio_reward,
    score_counting,
)
from perception_env.rewards.detection import DetectionRewardConfig, detection_reward, score_detection
from perception_env.rewards.grounding import GroundingRewardConfig, grounding_reward, score_grounding
from perception_env.rewards.matching import box_iou, generalized_box_iou, hungarian_match
from perception_env.rewards.ocr import ocr_reward, score_ocr
from perception_env.rewards.result import RewardResult

__all__ = [
    "CountingRewardConfig",
    "DetectionRewardConfig",
    "GroundingRewardConfig",
    "RewardResult",
    "box_iou",
    "counting_exact_reward",
    "counting_ratio_reward",
    "counting_points_reward",
    "detection_reward",
    "generalized_box_iou",
    "grounding_reward",
    "hungarian_match",
    "ocr_reward",
    "score_counting",
    "score_detection",
    "score_grounding",
    "score_ocr",
]
