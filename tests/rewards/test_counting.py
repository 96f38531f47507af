"""Counting: the paper's matched-point reward and exact count."""

import math

import numpy as np
import pytest

from perception_env.data.sample import Sample
from perception_env.formats import get_format
from perception_env.rewards import (
    CountingRewardConfig,
    counting_exact_reward,
    counting_points_reward,
    score_counting,
)

GT = np.array([[10, 10], [50, 50], [90, 90]], dtype=float)


def test_points_reward_by_hand():
    # 100x100 image; preds (10,10) and (50,60): matched distances 0 and 10 px = 0.1 normalised.
    # mean 0.05 -> 2/3 * (1 - 0.05 / sqrt 2)
    r, b = counting_points_reward(np.array([[10, 10], [50, 60]]), GT, 100, 100)
    assert r == pytest.approx(2 / 3 * (1 - 0.05 / math.sqrt(2)))
    assert sorted((m["pred"], m["target"]) for m in b["matching"]) == [(0, 0), (1, 1)]
    assert b["unmatched_targets"] == [2]


def test_distance_normalised_per_axis():
    # 200x100 image: 20 px in x is 0.1 of the width
    r, _ = counting_points_reward(np.array([[20, 10]]), np.array([[0, 10]]), 200, 100)
    assert r == pytest.approx(1 - 0.1 / math.sqrt(2))


def test_points_reward_edges():
    assert counting_points_reward(np.zeros((0, 2)), np.zeros((0, 2)), 10, 10)[0] == 1.0
    assert counting_points_reward(np.zeros((0, 2)), GT, 100, 100)[0] == 0.0
    assert counting_points_reward(GT, np.zeros((0, 2)), 100, 100)[0] == 0.0
    assert counting_points_reward(GT, GT, 100, 100, well_formed=False)[0] == 0.0
    assert counting_points_reward(GT[::-1], GT, 100, 100)[0] == pytest.approx(1.0)
    # opposite corners: distance sqrt 2 -> 0
    assert counting_points_reward([[0, 0]], [[100, 100]], 100, 100)[0] == pytest.approx(0.0)


def test_exact_reward():
    assert counting_exact_reward(3, 3)[0] == 1.0
    assert counting_exact_reward(2, 3)[0] == 0.0
    assert counting_exact_reward(None, 0)[0] == 0.0


def _sample():
    return Sample("c", 1000, 1000, points=GT * 10, query="dog")


def test_score_counting_number_and_points_formats():
    s = _sample()
    assert score_counting("3", s, "number").reward == 1.0
    assert score_counting("There are three dogs.", s, "number").reward == 1.0
    res = score_counting("4", s, "number")
    assert res.reward == 0.0 and "counted 4" in res.reason
    # 1000x1000 image: relative units are pixels
    answer = "<|object_ref_start|>dog<|object_ref_end|>(100,100),(500,500),(900,900)"
    res = score_counting(answer, s, "qwen2-vl-points")
    assert res.reward == pytest.approx(1.0) and res.components["exact"] == 1.0
    # boxes: their centres count
    answer = get_format("qwen2-vl").write(boxes=np.hstack([GT * 10 - 5, GT * 10 + 5]), labels=["dog"] * 3)
    assert score_counting(answer, s, "qwen2-vl").reward == pytest.approx(1.0)


def test_score_counting_exact_kind_on_boxes():
    answer = "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(0,0),(10,10)<|box_end|>" * 3
    res = score_counting(answer, _sample(), "qwen2-vl", config=CountingRewardConfig(kind="exact"))
    assert res.reward == 1.0  # three objects, wherever they are


def test_not_well_formed_scores_zero_with_reason():
    res = score_counting("(100,100),(500,500) and more", _sample(), "qwen2-vl-points")
    assert res.reward == 0.0 and res.reason.startswith("not well-formed")


def test_box_centres_used_when_sample_has_no_points():
    s = Sample("c", 100, 100, boxes=np.array([[0, 0, 20, 20]], dtype=float), labels=("dog",))
    assert score_counting("(100,100)", s, "qwen2-vl-points").reward == pytest.approx(1.0)


def test_count_ratio_reward_by_hand():
    from perception_env.rewards import counting_ratio_reward

    assert counting_ratio_reward(3, 4)[0] == 0.75
    assert counting_ratio_reward(6, 4)[0] == 4 / 6
    assert counting_ratio_reward(0, 0)[0] == 1.0
    assert counting_ratio_reward(0, 3)[0] == 0.0
    assert counting_ratio_reward(None, 3)[0] == 0.0
    assert counting_ratio_reward(-2, 3)[0] == 0.0


def test_counting_env_ratio_reward_config():
    import gymnasium as gym

    import perception_env  # noqa: F401

    env = gym.make(
        "PerceptionR1/Counting-v0", difficulty="easy", answer_format="number", reward_config={"kind": "ratio"}
    )
    for seed in range(20):
        _, info = env.reset(seed=seed)
        n = int(env.unwrapped.oracle_answer())
        if n >= 2:
            break
    _, reward, _, _, info = env.step(str(n - 1))
    assert reward == (n - 1) / n and info["reward_components"]["exact"] == 0.0 and not info["is_success"]
    assert env.unwrapped.score(str(n)).reward == 1.0


def test_duplicate_correct_point_does_not_pay_twice():
    # 3 exact points plus a copy of the first: ratio 3/4, distances 0 -> 0.75 (and the copy is unmatched)
    r, b = counting_points_reward(np.vstack([GT, GT[:1]]), GT, 100, 100)
    assert r == pytest.approx(0.75) and b["unmatched_predictions"] == [3]
    # the same point three times for three targets: matched distances 0, 0.4*sqrt2, 0.8*sqrt2 (of sqrt2)
    r, _ = counting_points_reward(np.repeat(GT[:1], 3, axis=0), GT, 100, 100)
    assert r == pytest.approx(1 - (0 + 0.4 + 0.8) / 3)
