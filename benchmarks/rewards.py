"""Reward throughput, and the speed-up over a naive re-statement of the reference formulas.

    python benchmarks/rewards.py

Single-threaded: BLAS/OpenMP pools are pinned to one thread before numpy loads.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_env.data.sample import Sample  # noqa: E402
from perception_env.formats import get_format  # noqa: E402
from perception_env.rewards import detection_reward, score_detection, score_grounding, score_ocr  # noqa: E402
from perception_env.rewards.matching import hungarian_match  # noqa: E402


def per_call(fn, min_time: float = 0.5) -> float:
    """Seconds per call (best of 3 timed batches of at least ``min_time`` s)."""
    n, t = 1, 0.0
    while t < min_time / 5:
        n *= 2
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


# --------------------------------------------------------------------------- naive reference restatement
def naive_iou(a, b):
    """Pairwise, in Python, as the official code computes it."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_giou(a, b):
    iou = naive_iou(a, b)
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    c = cw * ch
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return iou - (c - union) / c if c > 0 else iou


def naive_detection_reward(pred, pred_labels, gt, gt_labels, w, h):
    """The paper's detection reward with Python loops for the cost matrix (scipy for the assignment)."""
    cost = []
    for p, pl in zip(pred, pred_labels):
        row = []
        for g, gl in zip(gt, gt_labels):
            pc = [(p[0] + p[2]) / 2 / w, (p[1] + p[3]) / 2 / h, (p[2] - p[0]) / w, (p[3] - p[1]) / h]
            gc = [(g[0] + g[2]) / 2 / w, (g[1] + g[3]) / 2 / h, (g[2] - g[0]) / w, (g[3] - g[1]) / h]
            l1 = sum(abs(x - y) for x, y in zip(pc, gc))
            row.append(1.0 * (pl != gl) + 5.0 * l1 - 2.0 * naive_giou(p, g))
        cost.append(row)
    rows, cols = hungarian_match(np.array(cost))
    tp = [(r, c) for r, c in zip(rows, cols) if naive_iou(pred[r], gt[c]) > 0.5]
    f1 = 2 * len(tp) / (len(pred) + len(gt))
    label = sum(pred_labels[r] == gt_labels[c] for r, c in tp) / max(len(pred), len(gt))
    iou = sum(naive_iou(pred[r], gt[c]) for r, c in tp) / max(len(pred), len(gt))
    return 0.25 + 0.75 * f1 + label + iou


def naive_levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def naive_ocr_reward(pred: str, gt: str) -> float:
    p, g = " ".join(pred.split()), " ".join(gt.split())
    n = max(len(p), len(g))
    return max(0.0, 1 - naive_levenshtein(p, g) / n) if n else 1.0


# --------------------------------------------------------------------------- main
def main() -> None:
    rng = np.random.default_rng(0)
    w, h = 640, 480
    classes = ["person", "dog", "cup", "car", "chair"]

    def random_boxes(n):
        xy = rng.uniform(0, [w - 60, h - 60], size=(n, 2))
        wh = rng.uniform(10, 60, size=(n, 2))
        return np.concatenate([xy, xy + wh], axis=1)

    gt = random_boxes(100)
    gt_labels = [classes[i] for i in rng.integers(0, 5, 100)]
    pred = gt + rng.normal(0, 3, gt.shape)
    pred_labels = [lab if rng.random() < 0.9 else "cat" for lab in gt_labels]
    sample = Sample("bench", w, h, boxes=gt, labels=tuple(gt_labels))
    fmt = get_format("qwen2.5-vl")
    answer = fmt.write(boxes=pred, labels=pred_labels, frame=fmt.make_frame(w, h))

    fast = detection_reward(pred, pred_labels, gt, gt_labels, w, h)[0]
    slow = naive_detection_reward(pred.tolist(), pred_labels, gt.tolist(), gt_labels, w, h)
    assert abs(fast - slow) < 1e-9, (fast, slow)

    t_arrays = per_call(lambda: detection_reward(pred, pred_labels, gt, gt_labels, w, h))
    t_full = per_call(lambda: score_detection(answer, sample, fmt))
    t_naive = per_call(lambda: naive_detection_reward(pred.tolist(), pred_labels, gt.tolist(), gt_labels, w, h))

    g_sample = Sample("g", w, h, boxes=gt[:1], labels=("the dog",), query="the dog")
    g_answer = "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(20,40),(300,500)<|box_end|>"
    q2 = get_format("qwen2-vl")
    t_ground = per_call(lambda: score_grounding(g_answer, g_sample, q2))
    box = gt[1].tolist()
    t_ground_naive = per_call(lambda: naive_iou(box, gt[0].tolist()) ** 2)

    words = "the quick brown fox jumps over the lazy dog".split()
    page = " ".join(rng.choice(words, 400))  # ~1,800 characters, a page-sized OCR text
    noisy = page.replace("o", "0", 20).replace(" the ", "  teh ", 5)
    o_sample = Sample("o", w, h, text=page)
    t_ocr = per_call(lambda: score_ocr(noisy, o_sample, "text"))
    t_ocr_naive = per_call(lambda: naive_ocr_reward(noisy, page), min_time=2.0)
    assert abs(score_ocr(noisy, o_sample, "text").reward - naive_ocr_reward(noisy, page)) < 1e-12

    print(f"threads: OMP/OPENBLAS/MKL = {os.environ['OMP_NUM_THREADS']}; numpy {np.__version__}")
    print("detection, 100 predicted x 100 target boxes (paper reward):")
    print(f"  detection_reward on arrays    {t_arrays * 1e3:8.3f} ms/call")
    print(f"  score_detection from JSON     {t_full * 1e3:8.3f} ms/call  (parse + frame + reward; target < 5 ms)")
    print(f"  naive pure-Python reference   {t_naive * 1e3:8.3f} ms/call  -> {t_naive / t_arrays:6.1f}x slower")
    print("grounding (qwen2-vl answer, IoU^2):")
    print(f"  score_grounding               {1 / t_ground:10,.0f} answers/s  (target >= 10,000/s)")
    print(f"  naive IoU^2 alone (no parse)  {1 / t_ground_naive:10,.0f} pairs/s")
    print(f"OCR ({len(page):,}-char page, 1 - normalised edit distance):")
    print(f"  score_ocr (rapidfuzz)         {1 / t_ocr:10,.0f} answers/s")
    print(f"  naive Python Levenshtein      {1 / t_ocr_naive:10,.1f} answers/s  -> {t_ocr_naive / t_ocr:6.0f}x slower")


if __name__ == "__main__":
    main()
