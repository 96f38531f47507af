"""The order-sensitive reward (``matching="listed"``), the ablation of Perception-R1's matched reward:
a correct answer listing the objects in another order scores full under Hungarian matching, less here."""

import gymnasium as gym
import numpy as np
import pytest

import perception_env  # noqa: F401  (registers the envs)
from perception_env.rewards import CountingRewardConfig, DetectionRewardConfig, detection_reward
from perception_env.rewards.counting import counting_points_reward
from perception_env.rewards.matching import listed_match, match_pairs

A, B = [0, 0, 50, 50], [50, 50, 100, 100]  # touching at one corner: IoU 0
FAR = [80, 0, 100, 20]
LISTED = DetectionRewardConfig(matching="listed")


def reward(pred, pred_labels, config=None):
    gt = np.array([A, B], float)
    return detection_reward(
        np.array(pred, float).reshape(-1, 4), pred_labels, gt, ["cat", "dog"], 100, 100, True, config
    )


def test_listed_match_pairs_by_position():
    rows, cols = listed_match(3, 2)
    assert rows.tolist() == cols.tolist() == [0, 1]
    # the costs are ignored: the cheap anti-diagonal is not chosen
    rows, cols = match_pairs(np.array([[9.0, 0.0], [0.0, 9.0]]), "listed")
    assert rows.tolist() == cols.tolist() == [0, 1]
    assert match_pairs(np.array([[9.0, 0.0], [0.0, 9.0]]))[1].tolist() == [1, 0]
    with pytest.raises(ValueError, match="matching"):
        match_pairs(np.zeros((1, 1)), "greedy")


def test_permuted_correct_answer_full_under_hungarian_format_only_under_listed():
    assert reward([B, A], ["dog", "cat"])[0] == 3.0
    r, b = reward([B, A], ["dog", "cat"], LISTED)
    # pair (0, 0) is B vs A, pair (1, 1) A vs B: IoU 0, no TP -> only the 0.25 format term
    assert r == pytest.approx(0.25)
    assert b["unmatched_predictions"] == [0, 1] and b["unmatched_targets"] == [0, 1]
    assert reward([A, B], ["cat", "dog"], LISTED)[0] == 3.0  # the listed order itself is perfect


def test_listed_extra_prediction_by_hand():
    # [A, FAR, B] vs [A, B]. Listed: (A, A) TP, (FAR, B) IoU 0, B unmatched: TP 1, F1 = 2/5,
    # label and IoU terms 1/3 each (D = max(3, 2)): 0.25 + 0.75*0.4 + 1/3 + 1/3
    assert reward([A, FAR, B], ["cat", "cat", "dog"], LISTED)[0] == pytest.approx(0.55 + 2 / 3)
    # Hungarian finds both: TP 2, F1 = 4/5, label and IoU 2/3 each
    assert reward([A, FAR, B], ["cat", "cat", "dog"])[0] == pytest.approx(0.25 + 0.6 + 4 / 3)


def test_listed_matched_iou_kind():
    cfg = DetectionRewardConfig(kind="matched-iou", matching="listed")
    assert reward([B, A], ["dog", "cat"], cfg)[0] == 0.0
    assert reward([A, B], ["cat", "dog"], cfg)[0] == 1.0


def test_counting_points_listed_by_hand():
    gt = np.array([[10.0, 10.0], [90.0, 90.0]])
    pred = gt[::-1]
    assert counting_points_reward(pred, gt, 100, 100)[0] == 1.0
    r, b = counting_points_reward(pred, gt, 100, 100, matching="listed")
    # each pair is 0.8 * sqrt(2) apart (normalised): 1 - 0.8 sqrt(2) / sqrt(2) = 0.2, count ratio 1
    assert r == pytest.approx(0.2)
    assert b["components"]["mean_distance"] == pytest.approx(0.8 * np.sqrt(2))


def test_configs_refuse_unknown_matching():
    for cls in (DetectionRewardConfig, CountingRewardConfig):
        with pytest.raises(ValueError, match="matching"):
            cls(matching="greedy")


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("PerceptionR1/Detection-v0", {"answer_format": "qwen2-vl"}),
        ("PerceptionR1/Detection-v0", {}),
        ("PerceptionR1/Counting-v0", {"answer_format": "qwen2-vl-points"}),
        ("PerceptionR1/Counting-v0", {"answer_format": "qwen2-vl"}),
    ],
)
def test_env_reverse_order_oracle(env_id, kwargs):
    difficulty = {"base": "easy", "num_objects": [3, 3], "count_range": [3, 3], "count_query": "all"}
    if "Detection" in env_id:
        difficulty = {"base": "easy", "num_objects": [3, 3]}
    rewards = {}
    for matching in ("hungarian", "listed"):
        env = gym.make(env_id, difficulty=difficulty, reward_config={"matching": matching}, **kwargs)
        env.reset(seed=0)
        u = env.unwrapped
        listed, reverse = u.oracle_answer(), u.oracle_answer(object_order=[2, 1, 0])
        assert listed != reverse
        a, b = u.score(listed), u.score(reverse)
        rewards[matching] = (a.reward, b.reward, a.info["max_reward"])
    top = rewards["hungarian"][2]
    assert rewards["hungarian"][0] == pytest.approx(rewards["hungarian"][1], abs=1e-9)
    assert rewards["hungarian"][1] > 0.9 * top
    assert rewards["listed"][0] == pytest.approx(rewards["hungarian"][0])
    assert rewards["listed"][1] < rewards["listed"][0] - 0.1 * top
