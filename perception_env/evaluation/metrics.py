"""The paper's evaluation metrics for grounding, counting and OCR (detection: :mod:`.coco`).

Pure functions of predictions and ground truth, in ORIGINAL-image pixels.
Every metric is a fraction in ``[0, 1]`` (the report shows percentages),
except counts and errors measured in objects.

* Grounding (RefCOCO/+/g): ``Acc@k`` = fraction with IoU(first predicted box,
  target) ``>= k`` for k in 0.1, 0.3, 0.5, 0.75, 0.95; ``acc_mean_50_75_95``
  (the paper's RefCOCOg number); mean IoU; centre accuracy (the predicted
  box's centre lies inside the target box, edges included). No box: IoU 0, miss.
* Counting (PixMo-Count): exact-match accuracy of the predicted count (the
  number of objects listed, or the number written for the ``number`` format)
  and its mean absolute error. An unreadable count is a miss, and 0 for the MAE.
* OCR (PageOCR), as the Fox / GOT-OCR evaluation the paper follows, per page
  then averaged: normalised edit distance ``Levenshtein(pred, gt) / max(len)``
  on the raw strings (characters; lower is better); BLEU (NLTK
  ``sentence_bleu``, 4-gram, uniform weights, no smoothing) on words; word-SET
  precision / recall / F1 (NLTK ``scores``); METEOR (see :func:`meteor`).
  Words are whitespace tokens, or, when either text contains Chinese, ``jieba``
  tokens (if ``jieba`` is installed; else one token per character, reported),
  whitespace tokens INCLUDED, as Fox/GOT's ``jieba.lcut(text)`` yields them.

A task's metrics read its scored answers' records (an env's ``step`` info, a line of ``predictions.jsonl``)
with :func:`parsed_of` and :func:`parsed_boxes`.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein

from perception_env.rewards.matching import single_iou

GROUNDING_THRESHOLDS = (0.1, 0.3, 0.5, 0.75, 0.95)


def parsed_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's ``"parsed"`` dict ({} when it has none)."""
    parsed = record.get("parsed")
    return parsed if isinstance(parsed, Mapping) else {}


def parsed_boxes(parsed: Mapping[str, Any]) -> np.ndarray:
    """A parsed answer's boxes, ``[N, 4]`` float64 pixels."""
    return np.asarray(parsed.get("boxes") or [], dtype=np.float64).reshape(-1, 4)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


# --------------------------------------------------------------------------- grounding
def centre_inside(pred: Sequence[float], target: Sequence[float]) -> bool:
    """Whether the centre of ``pred`` lies inside ``target`` (edges included)."""
    cx, cy = (float(pred[0]) + float(pred[2])) / 2.0, (float(pred[1]) + float(pred[3])) / 2.0
    return float(target[0]) <= cx <= float(target[2]) and float(target[1]) <= cy <= float(target[3])


def grounding_metrics(
    pred_boxes: Sequence[Sequence[float] | None], gt_boxes: Sequence[Sequence[float]]
) -> dict[str, float]:
    """Acc@{0.1,0.3,0.5,0.75,0.95}, their RefCOCOg mean over {.5,.75,.95}, mean IoU, centre accuracy.

    ``pred_boxes[i]`` is sample i's first predicted box (``None`` when none was read).
    """
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"{len(pred_boxes)} predictions for {len(gt_boxes)} targets")
    ious = [0.0 if p is None else single_iou(p, g) for p, g in zip(pred_boxes, gt_boxes)]
    centre = [p is not None and centre_inside(p, g) for p, g in zip(pred_boxes, gt_boxes)]
    out = {f"acc@{k:g}": _mean([iou >= k for iou in ious]) for k in GROUNDING_THRESHOLDS}
    out["acc_mean_50_75_95"] = _mean([out["acc@0.5"], out["acc@0.75"], out["acc@0.95"]])
    out["mean_iou"] = _mean(ious)
    out["centre_acc"] = _mean(centre)
    return out


# --------------------------------------------------------------------------- counting
def counting_metrics(pred_counts: Sequence[int | None], gt_counts: Sequence[int]) -> dict[str, float]:
    """Exact-match accuracy and mean absolute error (``None``: unreadable, a miss and 0 for the MAE)."""
    if len(pred_counts) != len(gt_counts):
        raise ValueError(f"{len(pred_counts)} predictions for {len(gt_counts)} targets")
    exact = [p is not None and int(p) == int(g) for p, g in zip(pred_counts, gt_counts)]
    errors = [abs((0 if p is None else int(p)) - int(g)) for p, g in zip(pred_counts, gt_counts)]
    return {"accuracy": _mean(exact), "mae": _mean(errors)}


# --------------------------------------------------------------------------- OCR
_CHINESE_RE = re.compile(r"[\u4e00-\u9fa5]")


def contains_chinese(text: str) -> bool:
    """Whether ``text`` holds a CJK unified ideograph (U+4E00..U+9FA5): then OCR words are jieba's."""
    return bool(_CHINESE_RE.search(text))


@functools.lru_cache(maxsize=1)
def _jieba():
    try:
        import logging

        import jieba  # optional: `pip install perception-r1[zh]`

        jieba.setLogLevel(logging.WARNING)
        return jieba
    except ImportError:
        return None


def chinese_tokenizer() -> str:
    """Which tokenizer Chinese text gets: ``"jieba"`` or ``"characters"`` (jieba not installed)."""
    return "jieba" if _jieba() is not None else "characters"


def ocr_words(text: str, chinese: bool) -> list[str]:
    r"""Word tokens as the Fox / GOT-OCR evaluation makes them: ``text.split()``, or for Chinese
    ``jieba.lcut(text)`` as it comes: every whitespace character (``"\r\n"`` together) is a token
    of its own and counts in BLEU, METEOR and the word sets. Without jieba: one token per character,
    whitespace included in the same way."""
    if not chinese:
        return text.split()
    jieba = _jieba()
    if jieba is not None:
        return list(jieba.lcut(text))
    return re.findall(r"\r\n|.", text, flags=re.DOTALL)


class _NoWordNet:
    """Stands in for NLTK's WordNet: no synonyms, so METEOR matches exact words and Porter stems only."""

    @staticmethod
    def synsets(*args, **kwargs) -> list:
        return []


@functools.lru_cache(maxsize=1)
def meteor_variant() -> str:
    """``"meteor"`` when NLTK's WordNet corpus is on disk, else ``"meteor_exact_stem"``.

    Full METEOR also matches WordNet synonyms; the corpus is a separate
    download that this project does not make (no network at run time). Without
    it the score is METEOR restricted to exact and Porter-stem matches,
    reported under its own name so that nobody mistakes it for the paper's.
    """
    try:
        import nltk

        nltk.data.find("corpora/wordnet")
        return "meteor"
    except LookupError:
        try:
            import nltk

            nltk.data.find("corpora/wordnet.zip")
            return "meteor"
        except LookupError:
            return "meteor_exact_stem"


def meteor(reference: list[str], hypothesis: list[str]) -> float:
    """NLTK's single-reference METEOR (alpha 0.9, beta 3, gamma 0.5); WordNet synonyms only if installed."""
    from nltk.translate.meteor_score import meteor_score

    if not reference or not hypothesis:
        return 0.0
    kwargs = {} if meteor_variant() == "meteor" else {"wordnet": _NoWordNet()}
    return float(meteor_score([reference], hypothesis, **kwargs))


def bleu(reference: list[str], hypothesis: list[str]) -> float:
    """NLTK ``sentence_bleu`` (BLEU-4, uniform weights, no smoothing), as ``nltk.translate.bleu``; 0 when empty."""
    from nltk.translate.bleu_score import sentence_bleu

    if not reference or not hypothesis:
        return 0.0
    with (
        warnings.catch_warnings()
    ):  # "the hypothesis contains 0 counts of n-gram overlaps": score 0, as intended
        warnings.simplefilter("ignore")
        return float(sentence_bleu([reference], hypothesis))


def word_prf(reference: list[str], hypothesis: list[str]) -> tuple[float, float, float]:
    """Precision, recall and F1 of the word SETS (NLTK ``scores``; an undefined value is 0)."""
    ref, hyp = set(reference), set(hypothesis)
    common = len(ref & hyp)
    p = common / len(hyp) if hyp else 0.0
    r = common / len(ref) if ref else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def normalized_edit_distance(pred: str, gt: str) -> float:
    """``Levenshtein(pred, gt) / max(len(pred), len(gt))`` on the raw strings; 0 when both are empty."""
    longest = max(len(pred), len(gt))
    return Levenshtein.distance(pred, gt) / longest if longest else 0.0


def ocr_sample_metrics(pred: str | None, gt: str) -> dict[str, float]:
    """One page's OCR metrics (``pred=None``, nothing read, counts as the empty string)."""
    pred = pred or ""
    chinese = contains_chinese(gt) or contains_chinese(pred)
    ref, hyp = ocr_words(gt, chinese), ocr_words(pred, chinese)
    p, r, f = word_prf(ref, hyp)
    return {
        "edit_distance": normalized_edit_distance(pred, gt),
        "f1": f,
        "precision": p,
        "recall": r,
        "bleu": bleu(ref, hyp),
        meteor_variant(): meteor(ref, hyp),
    }


def ocr_metrics(preds: Sequence[str | None], gts: Sequence[str]) -> dict[str, float]:
    """The per-page OCR metrics (:func:`ocr_sample_metrics`) averaged over pages."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} targets")
    rows = [ocr_sample_metrics(p, g) for p, g in zip(preds, gts)]
    keys = rows[0].keys() if rows else ocr_sample_metrics("", "").keys()
    return {k: _mean([row[k] for row in rows]) for k in keys}
