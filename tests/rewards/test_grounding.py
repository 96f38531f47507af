"""Grounding: IoU ** power of the first box."""

import numpy as np
import pytest

from perception_env.data.sample import Sample
from perception_env.rewards import GroundingRewardConfig, grounding_reward, score_grounding

BOX = "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>({},{}),({},{})<|box_end|>"


def _sample(w=1000, h=1000, box=(0, 0, 10, 10)):
    return Sample("g", w, h, boxes=np.array([box], dtype=float), labels=("the dog",), query="the dog")


def test_iou_squared_by_hand():
    # [0,0,10,10] vs [5,0,15,10]: inter 50, union 150 -> IoU 1/3 -> reward 1/9
    r, b = grounding_reward([5, 0, 15, 10], [0, 0, 10, 10])
    assert r == pytest.approx(1 / 9) and b["components"]["iou"] == pytest.approx(1 / 3)
    assert grounding_reward([5, 0, 15, 10], [0, 0, 10, 10], power=1.0)[0] == pytest.approx(1 / 3)
    assert grounding_reward(None, [0, 0, 10, 10])[0] == 0.0
    assert grounding_reward([3, 3, 3, 3], [3, 3, 3, 3])[0] == 0.0  # degenerate: no NaN


def test_scorer_reads_first_box_in_relative_frame():
    # 1000x1000 image: relative-1000 units are pixels, so the answer's box is [5,0,15,10] exactly
    answer = BOX.format(5, 0, 15, 10) + "<|box_start|>(0,0),(10,10)<|box_end|>"
    res = score_grounding(answer, _sample(), "qwen2-vl")
    assert res.reward == pytest.approx(1 / 9)
    assert res.unmatched_predictions == [1] and "only the first" in res.reason


def test_scorer_converts_relative_frame():
    # 200x100 image, target [20,10,60,50] px = relative (100,100),(300,500)
    res = score_grounding(BOX.format(100, 100, 300, 500), _sample(200, 100, (20, 10, 60, 50)), "qwen2-vl")
    assert res.reward == pytest.approx(1.0) and res.parsed.well_formed


def test_format_weight_and_no_box():
    cfg = GroundingRewardConfig(format_weight=0.5)
    res = score_grounding(BOX.format(0, 0, 10, 10), _sample(), "qwen2-vl", config=cfg)
    assert res.max_reward == 1.5 and res.reward == pytest.approx(1.5)
    res = score_grounding("I cannot see a dog.", _sample(), "qwen2-vl", config=cfg)
    assert res.reward == 0.0 and res.unmatched_targets == [0] and res.reason


def test_sample_without_box_is_a_dataset_error():
    with pytest.raises(ValueError, match="no target box"):
        score_grounding("", Sample("x", 10, 10), "qwen2-vl")
