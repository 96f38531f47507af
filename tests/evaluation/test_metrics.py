"""Hand-computed values for the grounding, counting and OCR metrics."""

import math
import re
import types
import warnings

import pytest

from perception_env.evaluation import metrics as M
from perception_env.evaluation.metrics import (
    counting_metrics,
    grounding_metrics,
    ocr_metrics,
    ocr_sample_metrics,
)


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
    assert m["bleu"] == pytest.approx(
        0.0, abs=1e-12
    )  # 3 words: no 4-gram, and NLTK's unsmoothed BLEU is then 0 (as Fox/GOT)
    # raw strings: whitespace counts for the edit distance
    assert ocr_sample_metrics("a  b", "a b")["edit_distance"] == pytest.approx(1 / 4)


def test_word_prf_matches_nltk():
    from nltk.metrics.scores import f_measure, precision, recall

    ref, hyp = "a b c d a".split(), "a x c y z".split()
    p, r, f = M.word_prf(ref, hyp)
    assert (p, r, f) == pytest.approx(
        (precision(set(ref), set(hyp)), recall(set(ref), set(hyp)), f_measure(set(ref), set(hyp)))
    )


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
    # one token per character, whitespace kept as jieba keeps it ("\r\n" is one token)
    assert M.ocr_words("你好 世界\r\n", chinese=True) == ["你", "好", " ", "世", "界", "\r\n"]
    m = ocr_sample_metrics("你好世", "你好世界")
    assert m["recall"] == 0.75 and m["precision"] == 1.0


# -- Chinese word metrics exactly as the Fox / GOT-OCR evaluation computes them ---------------------------
# jieba is not installed here (and must not be): a stand-in with jieba's precise-mode handling of everything
# but the dictionary. jieba.lcut splits the text into runs of re_han_default and the rest; each whitespace
# character of the rest (re_skip_default, "\r\n" together) is a token of its own, every other character too;
# a run is cut by its dictionary, here a greedy longest match over WORDS.
_HAN = re.compile(r"([\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-]+)")
_SKIP = re.compile(r"(\r\n|\s)")
WORDS = {"我们", "今天", "天气", "很好", "公园", "你好", "世界"}


def _cut_run(run: str) -> list[str]:
    tokens, i = [], 0
    while i < len(run):
        n = next((n for n in (2, 1) if run[i : i + n] in WORDS), 1)
        tokens.append(run[i : i + n])
        i += n
    return tokens


def stand_in_lcut(text: str) -> list[str]:
    tokens = []
    for block in _HAN.split(text):
        if _HAN.fullmatch(block):
            tokens += _cut_run(block)
        else:
            for piece in _SKIP.split(block):
                tokens += [piece] if _SKIP.fullmatch(piece) else list(piece)
    return tokens


def fox_cal_per_metrics(pred: str, gt: str) -> dict:
    """Fox's eval_tools cal_per_metrics (as GOT-OCR's), restated: jieba tokens AS THEY COME, NLTK's
    BLEU and METEOR on the token lists, NLTK precision / recall / F on the token SETS."""
    from nltk.metrics import f_measure, precision, recall
    from nltk.translate import bleu, meteor_score

    if M.contains_chinese(gt) or M.contains_chinese(pred):
        reference, hypothesis = stand_in_lcut(gt), stand_in_lcut(pred)
    else:
        reference, hypothesis = gt.split(), pred.split()
    with warnings.catch_warnings():  # NLTK warns of the 0 counts that make a BLEU of 0
        warnings.simplefilter("ignore")
        fox_bleu = bleu([reference], hypothesis)
    out = {
        "bleu": fox_bleu,
        "meteor_exact_stem": meteor_score.meteor_score([reference], hypothesis, wordnet=M._NoWordNet()),
    }
    reference, hypothesis = set(reference), set(hypothesis)
    out.update(f1=f_measure(reference, hypothesis), precision=precision(reference, hypothesis))
    out["recall"] = recall(reference, hypothesis)
    return out


@pytest.fixture
def jieba_stand_in(monkeypatch):
    monkeypatch.setattr(M, "_jieba", lambda: types.SimpleNamespace(lcut=stand_in_lcut))
    monkeypatch.setattr(M, "meteor_variant", lambda: "meteor_exact_stem")  # no WordNet here: like for like


def test_stand_in_cuts_as_jieba_does():
    assert stand_in_lcut("我们 今天去公园。\r\n很好") == [
        "我们",
        " ",
        "今天",
        "去",
        "公园",
        "。",
        "\r\n",
        "很好",
    ]


def test_chinese_words_keep_jiebas_whitespace_tokens(jieba_stand_in):
    assert M.ocr_words("今天天气\n很好", chinese=True) == ["今天", "天气", "\n", "很好"]
    # gt [我们, " ", 今天, " ", 去, " ", 公园], pred [我们, 今天, 去, 公园]
    m = ocr_sample_metrics("我们今天去公园", "我们 今天 去 公园")
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(4 / 5)  # " " is one of 5 reference words
    assert m["f1"] == pytest.approx(8 / 9)  # was 1.0 with the spaces dropped
    assert m["bleu"] == pytest.approx(0.0, abs=1e-200)  # no bigram of pred is in gt: p2 = 0 (was 1.0)
    # METEOR: 4 matches, P = 1, R = 4/7, fmean = PR / (0.9 P + 0.1 R) = 40/67; 4 chunks of 1: penalty 0.5
    assert m["meteor_exact_stem"] == pytest.approx(20 / 67)  # was 1 - 0.5 / 64
    # gt [今天, 天气, "\n", 很好], pred [今天, 天气, 很好]: P = 1, R = 3/4, F1 = 6/7 (was 1.0)
    assert ocr_sample_metrics("今天天气很好", "今天天气\n很好")["f1"] == pytest.approx(6 / 7)


@pytest.mark.parametrize(
    "pred, gt",
    [
        ("我们今天去公园", "我们 今天 去 公园"),
        ("今天天气很好\n我们去公园", "今天天气很好 我们去公园"),
        ("今天 天气 很好 我们 去 公园 你好 世界", "今天 天气 很好 我们 去 公园 你好 世界"),
        ("今天天气很好，我们去公园。", "今天天气很好\r\n我们去公园。"),
        ("hello world 你好", "hello  world\t你好 世界"),
        ("", "你好"),
    ],
)
def test_chinese_metrics_equal_fox_cal_per_metrics(jieba_stand_in, pred, gt):
    ours, fox = ocr_sample_metrics(pred, gt), fox_cal_per_metrics(pred, gt)
    for key, value in fox.items():
        assert ours[key] == pytest.approx(0.0 if value is None else value), key  # NLTK's None: undefined -> 0
