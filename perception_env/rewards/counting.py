"""Counting rewards: matched point distance (the paper's) and exact count."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from perception_env.data.sample import Sample
from perception_env.formats import AnswerFormat
from perception_env.frames import CoordinateFrame
from perception_env.rewards.matching import MATCHINGS, match_pairs
from perception_env.rewards.result import RewardResult, clamp, read_answer, why

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class CountingRewardConfig:
    """``kind``: ``"auto"`` (exact count for the ``number`` format, else points), ``"points"``,
    ``"exact"`` (the number of predicted objects must equal the number of targets: the paper's
    evaluation metric) or ``"ratio"`` (the paper's count-ratio term ``min(Np, Ng) / max(Np, Ng)``
    alone: partial credit for near misses, a denser signal for RL on number answers).

    ``matching`` (point answers): ``"hungarian"`` (the paper's) or ``"listed"``, the order-sensitive
    ablation: point ``i`` paired with target ``i`` as the sample lists them, the rest unmatched."""

    kind: Literal["auto", "points", "exact", "ratio"] = "auto"
    matching: Literal["hungarian", "listed"] = "hungarian"

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "points", "exact", "ratio"):
            raise ValueError(f"kind must be 'auto', 'points', 'exact' or 'ratio', got {self.kind!r}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching must be one of {MATCHINGS}, got {self.matching!r}")


def counting_points_reward(
    pred_points: np.ndarray,
    gt_points: np.ndarray,
    width: int,
    height: int,
    well_formed: bool = True,
    matching: str = "hungarian",
) -> tuple[float, dict]:
    """The paper's counting reward, in ``[0, 1]``.

    Points ``[P, 2]`` / ``[G, 2]`` are original pixels; they are divided by the
    image width/height so distances lie in ``[0, sqrt(2)]`` (the paper's
    ``[0, 1000)`` units divided by ``1000 * sqrt(2)``, the same thing)::

        min(P, G) / max(P, G) * (1 - mean Hungarian-matched distance / sqrt(2))

    ``matching="listed"``: point ``i`` paired with target ``i`` instead (the order-sensitive ablation).

    0 when not well-formed; 1 when both sets are empty (and well-formed).
    Breakdown: ``components`` (``count_ratio``, ``mean_distance``, ``distance_term``),
    ``matching`` (``pred, target, distance`` normalised, ``tp``), unmatched indices.
    """
    pred = np.asarray(pred_points, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt_points, dtype=np.float64).reshape(-1, 2)
    n_pred, n_gt = len(pred), len(gt)
    rows = cols = np.zeros(0, dtype=np.int64)
    dist = np.zeros(0)
    if n_pred and n_gt:
        scale = np.array([width, height], dtype=np.float64)
        d = np.linalg.norm((pred / scale)[:, None, :] - (gt / scale)[None, :, :], axis=-1)  # [P, G]
        rows, cols = match_pairs(d, matching)
        dist = d[rows, cols]
    if n_pred == 0 and n_gt == 0:
        ratio, mean_d = 1.0, 0.0
    else:
        ratio = min(n_pred, n_gt) / max(n_pred, n_gt)
        mean_d = float(dist.mean()) if len(dist) else SQRT2
    distance_term = 1.0 - mean_d / SQRT2
    reward = ratio * distance_term if well_formed else 0.0
    matched_pred, matched_gt = set(rows.tolist()), set(cols.tolist())
    breakdown = {
        "components": {
            "format": 1.0 if well_formed else 0.0,
            "count_ratio": ratio,
            "mean_distance": mean_d,
            "distance_term": distance_term,
            "n_pred": float(n_pred),
            "n_gt": float(n_gt),
        },
        "matching": [
            {"pred": int(r), "target": int(c), "distance": float(x), "tp": True}
            for r, c, x in zip(rows, cols, dist)
        ],
        "unmatched_predictions": [i for i in range(n_pred) if i not in matched_pred],
        "unmatched_targets": [j for j in range(n_gt) if j not in matched_gt],
    }
    return clamp(reward, 1.0), breakdown


def counting_exact_reward(pred_count: int | None, gt_count: int) -> tuple[float, dict]:
    """1.0 when ``pred_count == gt_count``, else 0.0 (``None``, i.e. nothing read, is 0)."""
    ok = pred_count is not None and int(pred_count) == int(gt_count)
    return (1.0 if ok else 0.0), {"components": {"exact": 1.0 if ok else 0.0, "n_gt": float(gt_count)}}


def counting_ratio_reward(pred_count: int | None, gt_count: int) -> tuple[float, dict]:
    """``min(p, g) / max(p, g)`` in ``[0, 1]``; 1.0 when both are 0; ``None`` (nothing read) is 0."""
    if pred_count is None:
        ratio = 0.0
    else:
        p, g = max(0, int(pred_count)), int(gt_count)
        ratio = 1.0 if p == g else min(p, g) / max(p, g)
    ok = pred_count is not None and int(pred_count) == int(gt_count)
    return ratio, {"components": {"count_ratio": ratio, "exact": 1.0 if ok else 0.0, "n_gt": float(gt_count)}}


def target_points(sample: Sample) -> np.ndarray:
    """The sample's points, or its box centres when it has no points (``[G, 2]`` pixels)."""
    points = np.asarray(sample.points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0 and len(sample.boxes):
        boxes = np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4)
        points = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    return points


def score_counting(
    answer: str,
    sample: Sample,
    fmt: AnswerFormat | str = "qwen2-vl",
    frame: CoordinateFrame | None = None,
    config: CountingRewardConfig | None = None,
) -> RewardResult:
    """Score a counting answer against ``sample.points`` (box centres when there are no points).

    ``number`` answers (or ``config.kind="exact"``) get the exact-count reward;
    box/point answers get :func:`counting_points_reward` on the parsed points
    (box centres). ``components["exact"]`` always says whether the count was right.
    """
    cfg = config or CountingRewardConfig()
    fmt, parsed = read_answer(answer, sample, fmt, frame)
    gt = target_points(sample)
    # Count-only data (no points, e.g. a JSONL "count") can only be scored by the count.
    gt_count = sample.count if sample.count is not None else len(gt)
    count_only = len(gt) != gt_count
    pred_count = parsed.count if fmt.produces == "count" else len(parsed.points)
    exact, _ = counting_exact_reward(pred_count, gt_count)
    use_exact = cfg.kind in ("exact", "ratio") or (
        cfg.kind == "auto" and (fmt.produces == "count" or count_only)
    )
    if use_exact:
        score = counting_ratio_reward if cfg.kind == "ratio" else counting_exact_reward
        reward, b = score(pred_count, gt_count)
        b.update(matching=[], unmatched_predictions=[], unmatched_targets=[])
        b["components"].update(format=1.0 if parsed.well_formed else 0.0, n_pred=float(pred_count or 0))
    else:
        reward, b = counting_points_reward(
            parsed.points, gt, sample.width, sample.height, parsed.well_formed, cfg.matching
        )
        b["components"]["exact"] = exact
    reason = why(parsed)
    if not use_exact and not parsed.well_formed:
        reason = "not well-formed, so 0 (paper): " + (reason or "")
    elif reason is None and reward < 1.0 and pred_count is not None and pred_count != gt_count:
        reason = f"counted {pred_count}, expected {gt_count}"
    return RewardResult.from_breakdown(reward, 1.0, b, parsed, reason)
