"""Detection reward: Hungarian-matched boxes and labels (the paper's, and a plain matched-IoU one).

All boxes are ``[x1, y1, x2, y2]`` in pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from perception_env.data.sample import Sample
from perception_env.formats import AnswerFormat
from perception_env.frames import CoordinateFrame
from perception_env.rewards.matching import MATCHINGS, box_cxcywh, box_iou_giou, match_pairs
from perception_env.rewards.result import RewardResult, clamp, read_answer, why


@dataclass(frozen=True)
class DetectionRewardConfig:
    """How detection answers are scored.

    ``kind="paper"`` (Perception-R1): DETR-style Hungarian matching with cost
    ``cost_class * [label differs] + cost_l1 * L1(cx, cy, w, h normalised by
    image size) + cost_giou * (-GIoU)``; a matched pair with IoU >
    ``iou_threshold`` is a true positive (TP). Reward::

        format_weight * well_formed + f1_weight * F1
        + label_weight * (sum over TP pairs of [label correct]) / D
        + iou_weight   * (sum over TP pairs of IoU) / D
        - fp_fn_penalty * (FP / N_pred + FN / N_gt)

    clamped to ``[0, max_reward]`` (3.0 by default). ``D`` is set by
    ``match_denominator``: ``"max"`` (default) = ``max(N_pred, N_gt)``, so the
    label and IoU terms are averages over *all* objects: a missed target or an
    extra (e.g. duplicate) prediction lowers them, and predicting one easy box
    out of ten does not earn full label/IoU credit. ``"tp"`` = number of TP
    pairs, the official code's literal "mean over matches" (missed objects then
    cost only through F1). Either way a duplicate box is matched at most once.

    ``kind="matched-iou"``: Hungarian matching on ``-IoU`` where a pair whose
    labels differ has IoU 0 (it cannot earn anything); reward = sum of matched
    IoUs / ``max(N_pred, N_gt)``, in ``[0, 1]``; no format term.

    ``matching="listed"`` (the ablation of the matched reward, not the paper's): prediction ``i`` is
    paired with target ``i`` in the order the sample lists them, the rest unmatched, whatever the
    costs; a correct answer that lists the objects in another order then earns less.

    Both kinds: no predictions and no targets is a perfect answer (every term
    1) when the answer is well-formed (e.g. ``[]``), and 0 (paper: format term
    only, which is then 0 too) when it is unreadable text. Targets without
    labels (``sample.labels`` empty) make every label correct.
    """

    kind: Literal["paper", "matched-iou"] = "paper"
    format_weight: float = 0.25
    f1_weight: float = 0.75
    label_weight: float = 1.0
    iou_weight: float = 1.0
    iou_threshold: float = 0.5
    fp_fn_penalty: float = 0.0  # the paper's optional variant uses 0.5
    cost_class: float = 1.0
    cost_l1: float = 5.0
    cost_giou: float = 2.0
    match_denominator: Literal["max", "tp"] = "max"
    matching: Literal["hungarian", "listed"] = "hungarian"

    def __post_init__(self) -> None:
        if self.kind not in ("paper", "matched-iou"):
            raise ValueError(f"kind must be 'paper' or 'matched-iou', got {self.kind!r}")
        if self.match_denominator not in ("max", "tp"):
            raise ValueError(f"match_denominator must be 'max' or 'tp', got {self.match_denominator!r}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching must be one of {MATCHINGS}, got {self.matching!r}")
        weights = (self.format_weight, self.f1_weight, self.label_weight, self.iou_weight, self.fp_fn_penalty)
        if min(weights) < 0:
            raise ValueError("reward weights must be >= 0")

    @property
    def max_reward(self) -> float:
        if self.kind == "matched-iou":
            return 1.0
        return self.format_weight + self.f1_weight + self.label_weight + self.iou_weight


def _norm_label(label: object) -> str | None:
    return None if label is None else " ".join(str(label).lower().split())


def label_agreement(
    pred_labels: Sequence[str | None], gt_labels: Sequence[str], n_pred: int, n_gt: int
) -> np.ndarray:
    """``[N_pred, N_gt]`` bool: labels equal ignoring case and extra whitespace (all True without gt labels)."""
    if len(gt_labels) == 0:
        return np.ones((n_pred, n_gt), dtype=bool)
    # Compare integer codes, not strings: 100 x 100 object-array comparisons cost ~0.3 ms.
    codes: dict[str, int] = {}
    gt = np.array([codes.setdefault(_norm_label(g), len(codes)) for g in gt_labels], dtype=np.int64)
    pred_labels = list(pred_labels) + [None] * (n_pred - len(pred_labels))
    pred = np.array(
        [codes.get(_norm_label(p), -1) if p is not None else -1 for p in pred_labels], dtype=np.int64
    )
    return pred[:, None] == gt[None, :]  # -1 (no label / unknown label) never equals a code


def detection_reward(
    pred_boxes: np.ndarray,
    pred_labels: Sequence[str | None],
    gt_boxes: np.ndarray,
    gt_labels: Sequence[str],
    width: int,
    height: int,
    well_formed: bool = True,
    config: DetectionRewardConfig | None = None,
) -> tuple[float, dict]:
    """Score predicted boxes ``[P, 4]`` against targets ``[T, 4]`` (original pixels).

    Returns ``(reward, breakdown)``; reward in ``[0, config.max_reward]``;
    breakdown has ``components``, ``matching`` (dicts ``pred, target, iou,
    label_ok, tp``), ``unmatched_predictions`` and ``unmatched_targets``
    (indices that earned nothing).
    """
    cfg = config or DetectionRewardConfig()
    pred = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    n_pred, n_gt = len(pred), len(gt)
    wf = 1.0 if well_formed else 0.0
    label_ok = label_agreement(pred_labels, gt_labels, n_pred, n_gt)

    rows = cols = np.zeros(0, dtype=np.int64)
    iou = np.zeros((n_pred, n_gt))
    if n_pred and n_gt:
        iou, giou = box_iou_giou(pred, gt)
        if cfg.kind == "paper":
            scale = np.array([width, height, width, height], dtype=np.float64)
            p, g = (box_cxcywh(pred) / scale).T, (box_cxcywh(gt) / scale).T  # [4, N], [4, M]
            l1 = sum(
                np.abs(p[k][:, None] - g[k][None, :]) for k in range(4)
            )  # [N, M], no [N, M, 4] temporary
            cost = cfg.cost_class * (~label_ok) + cfg.cost_l1 * l1 - cfg.cost_giou * giou
        else:
            iou = iou * label_ok  # a wrong label earns nothing
            cost = -iou
        rows, cols = match_pairs(cost, cfg.matching)
    m_iou, m_label = iou[rows, cols], label_ok[rows, cols]

    if cfg.kind == "paper":
        tp_mask = m_iou > cfg.iou_threshold
        tp = int(tp_mask.sum())
        if n_pred == 0 and n_gt == 0:
            f1 = label_term = iou_term = wf  # "nothing here", said in the format, is exactly right
            penalty = 0.0
        else:
            f1 = 2.0 * tp / (n_pred + n_gt)
            denom = max(n_pred, n_gt) if cfg.match_denominator == "max" else tp
            label_term = float(m_label[tp_mask].sum()) / denom if denom else 0.0
            iou_term = float(m_iou[tp_mask].sum()) / denom if denom else 0.0
            penalty = ((n_pred - tp) / n_pred if n_pred else 0.0) + ((n_gt - tp) / n_gt if n_gt else 0.0)
        raw = (
            cfg.format_weight * wf
            + cfg.f1_weight * f1
            + cfg.label_weight * label_term
            + cfg.iou_weight * iou_term
            - cfg.fp_fn_penalty * penalty
        )
        components = {
            "format": wf,
            "f1": f1,
            "label": label_term,
            "iou": iou_term,
            "fp_fn": penalty,
            "precision": tp / n_pred if n_pred else float(n_gt == 0),
            "recall": tp / n_gt if n_gt else float(n_pred == 0),
            "true_positives": float(tp),
        }
    else:
        tp_mask = m_iou > 0
        raw = float(m_iou.sum()) / max(n_pred, n_gt) if (n_pred or n_gt) else wf
        components = {"matched_iou": raw, "format": wf, "true_positives": float(tp_mask.sum())}
    components["n_pred"], components["n_gt"] = float(n_pred), float(n_gt)

    matching = [
        {"pred": int(r), "target": int(c), "iou": float(i), "label_ok": bool(lab), "tp": bool(t)}
        for r, c, i, lab, t in zip(rows, cols, m_iou, m_label, tp_mask)
    ]
    earned_pred = set(rows[tp_mask].tolist())
    earned_gt = set(cols[tp_mask].tolist())
    breakdown = {
        "components": components,
        "matching": matching,
        "unmatched_predictions": [i for i in range(n_pred) if i not in earned_pred],
        "unmatched_targets": [j for j in range(n_gt) if j not in earned_gt],
    }
    return clamp(raw, cfg.max_reward), breakdown


def score_detection(
    answer: str,
    sample: Sample,
    fmt: AnswerFormat | str = "qwen2.5-vl",
    frame: CoordinateFrame | None = None,
    config: DetectionRewardConfig | None = None,
) -> RewardResult:
    """Parse ``answer`` in ``fmt`` (read in ``frame``; default: the format's frame for the sample) and score it
    against ``sample.boxes`` / ``sample.labels``. Never raises for any answer."""
    cfg = config or DetectionRewardConfig()
    fmt, parsed = read_answer(answer, sample, fmt, frame)
    reward, b = detection_reward(
        parsed.boxes,
        parsed.labels,
        sample.boxes,
        sample.labels,
        sample.width,
        sample.height,
        parsed.well_formed,
        cfg,
    )
    reason = why(parsed)
    if reason is None and len(sample.boxes) and not len(parsed.boxes):
        reason = "no objects predicted"
    return RewardResult.from_breakdown(reward, cfg.max_reward, b, parsed, reason)
