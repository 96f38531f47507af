"""Hand-computed values for the grounding, counting and OCR metrics."""

import math

import pytest

from perception_env.evaluation import metrics as M
from perception_env.evaluation.metrics import counting_metrics, grounding_metrics, ocr_metrics, ocr_sample_metrics


def test_grounding_metrics_by_hand():
    gt = [[0, 0, 10, 10]] * 4
    preds = [
        [0, 0, 10, 10],  # IoU 1
        [0, 0, 10, 5],  # IoU 0.5, centre (5, 2.5) inside
        [5, 5, 15, 15],  # IoU 25/175 = 1/7, centre (10, 10) on the corner: inside
        None,  # nothing read
    ]
    m = grounding_metrics(preds, gt)
    assert m["acc@0.1"] == 0.75
    assert m["acc@0.3"] == 0.5
    assert m["acc@0.5"] == 0.5  # IoU exactly 0.5 counts (>=), as the env's is_success
    assert m["acc@0.75"] == 0.25
    assert m["acc@0.95"] == 0.25
    assert m["acc_mean_50_75_95"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    assert m["mean_iou"] == pytest.approx((1 + 0.5 + 1 / 7 + 0) / 4)
    assert m["centre_acc"] == 0.75


def test_centre_outside_and_length_mismatch():
    assert grounding_metrics([[20, 20, 30, 30]], [[0, 0, 10, 10]])["centre_acc"] == 0.0
    with pytest.raises(ValueError):
        grounding_metrics([None], [])


def test_counting_metrics_by_hand():
    m = counting_metrics([3, 5, None, 0], [3, 2, 4, 0])
    assert m["accuracy"] == 0.5
    assert m["mae"] == pytest.approx((0 + 3 + 4 + 0) / 4)


def test_ocr_edit_distance_and_word_prf_by_hand():
    m = ocr_sample_metrics("the cat sat", "the cat sat down")
    assert m["edit_distance"] == pytest.approx(5 / 16)  # insert " down"
    assert m["precision"] == 1.0  # {the, cat, sat} all in the reference
    assert m["recall"] == 0.75  # 3 of {the, cat, sat, down}
    assert m["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert m["bleu"] == pytest.approx(0.0, abs=1e-12)  # 3 words: no 4-gram, and NLTK's unsmoothed BLEU is then 0 (as Fox/GOT)
    # raw strings: whitespace counts for the edit distance
    assert ocr_sample_metrics("a  b", "a b")["edit_distance"] == pytest.approx(1 / 4)


def test_word_prf_matches_nltk():
    from nltk.metrics.scores import f_measure, precision, recall

    ref, hyp = "a b c d a".split(), "a x c y z".split()
    p, r, f = M.word_prf(ref, hyp)
    assert (p, r, f) == pytest.approx((precision(set(ref), set(hyp)), recall(set(ref), set(hyp)), f_measure(set(ref), set(hyp))))


def test_bleu_known_pair():
    # p1 = 5/5, p2 = 3/4, p3 = 2/3, p4 = 1/2 -> geometric mean 0.25 ** 0.25; brevity penalty exp(1 - 6/5)
    expected = 0.25**0.25 * math.exp(1 - 6 / 5)
    assert M.bleu("the cat sat on the mat".split(), "the cat sat on mat".split()) == pytest.approx(expected)
    assert M.bleu("the cat sat on the mat".split(), "the cat sat on the mat".split()) == pytest.approx(1.0)
    assert M.bleu(["a"], []) == 0.0


def test_meteor_exact_stem_by_hand(monkeypatch):
    monkeypatch.setattr(M, "meteor_variant", lambda: "meteor_exact_stem")
    # 4 exact matches in one chunk: fmean 1, penalty 0.5 * (1/4) ** 3
    assert M.meteor("a b c d".split(), "a b c d".split()) == pytest.approx(1 - 0.5 / 64)
    # Porter stems match: cats~cat, run~runs; one chunk of 2: penalty 0.5 * (1/2) ** 3
    assert M.meteor("cats run".split(), "cat runs".split()) == pytest.approx(1 - 0.5 / 8)
    # no synonyms: only "dog" matches; P = R = 1/2, fmean 1/2, 1 chunk of 1 match: penalty 1/2
    assert M.meteor("big dog".split(), "large dog".split()) == pytest.approx(0.25)
    assert M.meteor(["a"], []) == 0.0


def test_ocr_metrics_average_and_empty():
    m = ocr_metrics(["", "same text here ok"], ["abcd", "same text here ok"])
    assert m["edit_distance"] == pytest.approx(0.5)  # 1.0 and 0.0
    assert m["f1"] == pytest.approx(0.5)
    assert m["bleu"] == pytest.approx(0.5)
    assert ocr_sample_metrics(None, "")["edit_distance"] == 0.0


def test_chinese_tokenisation_without_jieba(monkeypatch):
    monkeypatch.setattr(M, "_jieba", lambda: None)
    assert M.ocr_words("你好 世界", chinese=True) == ["你", "好", "世", "界"]
    m = ocr_sample_metrics("你好世", "你好世界")
    assert m["recall"] == 0.75 and m["precision"] == 1.0
