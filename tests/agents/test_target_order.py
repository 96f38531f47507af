"""The order in which supervised data lists an image's objects (agents/sft.py ``target_order``)."""

import gymnasium as gym
import numpy as np
import pytest

import perception_env  # noqa: F401  (registers the envs)
from agents.config import SetupError
from agents.sft import object_order, oracle_batch, supervised_warm_start
from perception_env.rewards.counting import target_points

DIFFICULTY = {"base": "easy", "num_objects": [2, 5], "shapes": ["circle", "square"]}


def detection_env(**kwargs):
    return gym.make("PerceptionR1/Detection-v0", difficulty=DIFFICULTY, answer_format="qwen2-vl", **kwargs)


def orders(env, order, seed, n=20):
    out = []
    for i in range(n):
        env.reset(options={"index": i})
        out.append(object_order(env, i, order, seed))
    return out


def test_random_order_is_a_pure_function_of_seed_and_sample():
    env = detection_env()
    first = orders(env, "random", seed=0)
    env.reset(options={"index": 7})  # visiting other samples in between changes nothing
    assert orders(detection_env(), "random", seed=0) == first
    assert orders(env, "random", seed=1) != first
    for i, order in enumerate(first):
        env.reset(options={"index": i})
        assert sorted(order) == list(range(len(env.unwrapped.sample.boxes)))


def test_sorted_is_reading_order_and_random_differs_from_it():
    env = detection_env()
    random_orders, sorted_orders = orders(env, "random", 0), orders(env, "sorted", 0)
    for i, order in enumerate(sorted_orders):
        env.reset(options={"index": i})
        centres = target_points(env.unwrapped.sample)[order]
        keys = [(y, x) for x, y in centres.tolist()]
        assert keys == sorted(keys)
    # with 2-5 objects a uniform permutation is the reading order at most half the time
    differ = sum(r != s for r, s in zip(random_orders, sorted_orders))
    assert differ >= 10
    assert orders(env, "listed", 0) == [None] * 20


def test_random_and_sorted_answers_score_alike_under_the_matched_reward():
    env = detection_env()
    _, random_answers = oracle_batch(env, list(range(10)), "random", 0)
    _, sorted_answers = oracle_batch(env, list(range(10)), "sorted", 0)
    assert random_answers != sorted_answers
    for i, (a, b) in enumerate(zip(random_answers, sorted_answers)):
        env.reset(options={"index": i})
        ra, rb = env.unwrapped.score(a), env.unwrapped.score(b)
        assert ra.reward == pytest.approx(rb.reward) and ra.reward > 0.95 * ra.info["max_reward"]
    # under the order-sensitive reward the same answers score apart
    listed = detection_env(reward_config={"matching": "listed"})
    gaps = []
    for i, (a, b) in enumerate(zip(random_answers, sorted_answers)):
        listed.reset(options={"index": i})
        gaps.append(abs(listed.unwrapped.score(a).reward - listed.unwrapped.score(b).reward))
    assert max(gaps) > 0.5


def test_counting_points_order():
    env = gym.make(
        "PerceptionR1/Counting-v0",
        difficulty={"base": "easy", "count_query": "all", "num_objects": [3, 3], "count_range": [3, 3]},
        answer_format="qwen2-vl-points",
    )
    env.reset(options={"index": 0})
    order = object_order(env, 0, "sorted")
    answer = env.unwrapped.oracle_answer(object_order=order)
    points = np.asarray(env.unwrapped.score(answer).result.parsed.points)
    assert points[:, 1].tolist() == sorted(points[:, 1].tolist())


def test_unknown_order_is_refused():
    env = detection_env()
    env.reset(options={"index": 0})
    with pytest.raises(SetupError, match="target_order"):
        object_order(env, 0, "alphabetical")
    with pytest.raises(SetupError, match="target_order"):
        supervised_warm_start(None, env, steps=1, target_order="alphabetical")
    with pytest.raises(ValueError, match="permutation"):
        env.unwrapped.oracle_answer(object_order=[0, 0])
