"""OCR: 1 - Levenshtein / max length, after collapsing whitespace."""

import pytest

from perception_env.data.sample import Sample
from perception_env.rewards import ocr_reward, score_ocr


def test_kitten_sitting_by_hand():
    # k->s, e->i, +g: distance 3, longest 7
    r, b = ocr_reward("kitten", "sitting")
    assert r == pytest.approx(1 - 3 / 7) and b["components"]["edit_distance"] == 3


def test_whitespace_collapsed_and_edges():
    assert ocr_reward("a  b\n\tc ", " a b c")[0] == 1.0
    assert ocr_reward("", "")[0] == 1.0
    assert ocr_reward("   ", "\n")[0] == 1.0
    assert ocr_reward("", "abc")[0] == 0.0
    assert ocr_reward(None, "abc")[0] == 0.0
    assert ocr_reward("xyz", "abc")[0] == 0.0
    assert ocr_reward("ab", "abcd")[0] == pytest.approx(0.5)


def test_scorer():
    s = Sample("o", 10, 10, text="Hello  world")
    res = score_ocr("Hello world", s, "text")
    assert res.reward == 1.0 and res.parsed.well_formed and res.reason is None
    res = score_ocr("", s, "text")
    assert res.reward == 0.0 and not res.parsed.well_formed and res.reason
    res = score_ocr("Hello world", s, "number")  # a format without text: 0, with a reason
    assert res.reward == 0.0 and res.reason
