"""Box overlap and one-to-one matching, vectorised (numpy + scipy).

Boxes are ``[x1, y1, x2, y2]`` in any common unit (the rewards use original
pixels). Inverted boxes count as empty (width/height clipped at 0). Nothing
here divides by zero or returns NaN: a box pair whose union is empty has IoU 0.
"""

from __future__ import annotations

import numpy as np

# linear_sum_assignment rejects inf/NaN; forbidden pairs get this finite cost instead.
FORBIDDEN_COST = 1e9


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """``[N]`` areas, 0 for zero-area or inverted boxes."""
    b = _as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def single_iou(a, b) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes in plain Python (fast for one pair); 0 for an empty union."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = max(ax2 - ax1, 0.0) * max(ay2 - ay1, 0.0) + max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0) - inter
    return inter / union if union > 0 else 0.0


def box_iou_giou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(iou, giou)``, each ``[N, M]``, sharing the intersection/union work.

    IoU is in ``[0, 1]`` and is 0 where the union is empty (two zero-area boxes).
    GIoU = IoU - (C - U) / C with C the enclosing box area, in ``[-1, 1]``;
    where C is 0 (all four corners on one line) the penalty term is taken as 0,
    so GIoU = IoU = 0 there.
    """
    a, b = _as_boxes(a), _as_boxes(b)
    ax1, ay1, ax2, ay2 = (a[:, k, None] for k in range(4))  # each [N, 1]
    bx1, by1, bx2, by2 = b.T  # each [M]
    area_a, area_b = box_area(a)[:, None], box_area(b)  # [N, 1], [M]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)  # [N, M]
    inter *= np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = area_a + area_b - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)

    enclosing = np.clip(np.maximum(ax2, bx2) - np.minimum(ax1, bx1), 0, None)
    enclosing *= np.clip(np.maximum(ay2, by2) - np.minimum(ay1, by1), 0, None)
    penalty = np.divide(enclosing - union, enclosing, out=np.zeros_like(inter), where=enclosing > 0)
    return iou, iou - penalty


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of every box in ``a`` ``[N, 4]`` with every box in ``b`` ``[M, 4]``; in ``[0, 1]``."""
    return box_iou_giou(a, b)[0]


def generalized_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` generalised IoU (Rezatofighi et al. 2019), in ``[-1, 1]``; see :func:`box_iou_giou`."""
    return box_iou_giou(a, b)[1]


def box_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` ``xyxy`` -> ``(cx, cy, w, h)``."""
    b = _as_boxes(boxes)
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)


def hungarian_match(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of rows to columns of ``cost`` ``[N, M]``.

    Returns ``(rows, cols)`` int arrays of length ``min(N, M)`` (rows
    ascending); empty when N or M is 0. NaN/inf costs are treated as
    :data:`FORBIDDEN_COST` (so scipy never rejects the matrix); callers that
    forbid pairs must check the returned pairs' costs themselves.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be 2-D, got shape {cost.shape}")
    if cost.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    if not np.isfinite(cost).all():
        cost = np.nan_to_num(cost, nan=FORBIDDEN_COST, posinf=FORBIDDEN_COST, neginf=-FORBIDDEN_COST)
    # imported here, not at the top: scipy.optimize is over half of `import perception_env`'s time, which
    # every perception-r1 command that names an env pays (tests/test_package.py keeps it out)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


MATCHINGS = ("hungarian", "listed")


def listed_match(n_pred: int, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """The order-sensitive pairing: prediction ``i`` with target ``i`` for ``i < min(n_pred, n_gt)``; the
    rest are unmatched. What supervision on one fixed target order, or a reward that reads the answer
    as a list, asks for (the ablation of Perception-R1's matched reward)."""
    both = np.arange(min(n_pred, n_gt), dtype=np.int64)
    return both, both.copy()


def match_pairs(cost: np.ndarray, matching: str = "hungarian") -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of ``cost`` ``[N, M]``: :func:`hungarian_match`, or :func:`listed_match` for
    ``matching="listed"`` (which ignores the costs)."""
    if matching == "listed":
        return listed_match(*np.shape(cost))
    if matching != "hungarian":
        raise ValueError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    return hungarian_match(cost)


__all__ = [
    "FORBIDDEN_COST",
    "MATCHINGS",
    "box_area",
    "box_cxcywh",
    "box_iou",
    "box_iou_giou",
    "generalized_box_iou",
    "hungarian_match",
    "listed_match",
    "match_pairs",
    "single_iou",
]
