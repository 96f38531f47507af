"""The envs under Gymnasium's vector envs and episode statistics: one step is one episode, in every mode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import RecordEpisodeStatistics

import perception_env  # noqa: F401  (registers the envs)

ENV_ID = "PerceptionR1/Counting-v0"
KWARGS = {"difficulty": "easy", "answer_format": "number"}
STEPS = 3
ANSWERS = [("0", "1", "2", "3"), ("4", "5", "x", ""), ("2", "2", "3", "3")]  # [STEPS][num_envs]


def expected_rewards(final_infos: dict) -> list[float]:
    """What ``env.score`` gives each env's answer against the sample it was shown (from its final info)."""
    env = gym.make(ENV_ID, **KWARGS).unwrapped
    indices, answers = final_infos["index"], final_infos["answer"]
    return [env.score(answer, index=int(i)).reward for i, answer in zip(indices, answers)]


def test_a_finished_episode_is_not_stepped_again():
    """Before: three steps after one reset counted as one episode of r = 1, 2, 3 and l = 1, 2, 3."""
    env = RecordEpisodeStatistics(gym.make(ENV_ID, **KWARGS))
    env.reset(seed=0)
    answer = env.unwrapped.oracle_answer()
    _, reward, terminated, _, info = env.step(answer)
    assert terminated and (info["episode"]["r"], info["episode"]["l"]) == (reward, 1) == (1.0, 1)
    with pytest.raises(gym.error.ResetNeeded, match="call reset"):
        env.step(answer)


def test_make_vec_resets_in_the_step_that_ends_the_episode():
    """``gym.make_vec(id, 4)``: every step scores 4 answers (before: every second step was a reset)."""
    envs = gym.make_vec(ENV_ID, num_envs=4, **KWARGS)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert gym.make(ENV_ID).metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    envs.reset(seed=0)
    for answers in ANSWERS:
        obs, rewards, terminated, truncated, info = envs.step(answers)
        assert terminated.all() and not truncated.any()
        assert info["final_info"]["answer"].tolist() == list(answers)
        assert rewards.tolist() == expected_rewards(info["final_info"])
        assert len(obs["image"]) == 4 and all(o.shape == (112, 112, 3) for o in obs["image"])
    envs.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_episode_statistics(mode):
    """4 envs, sync and async (shared memory, the default): each answer is an episode of length 1 whose
    return is its reward, per env (RecordEpisodeStatistics inside) and over the vector (the vector wrapper)."""
    envs = gym.make_vec(
        ENV_ID,
        num_envs=4,
        vectorization_mode=mode,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        wrappers=[RecordEpisodeStatistics],
        **KWARGS,
    )
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    envs.reset(seed=0)
    returns = []
    for answers in ANSWERS:
        _, rewards, terminated, _, info = envs.step(answers)
        assert terminated.all() and rewards.tolist() == expected_rewards(info["final_info"])
        per_env = info["final_info"]["episode"]
        assert per_env["r"].tolist() == rewards.tolist() and per_env["l"].tolist() == [1] * 4
        assert info["episode"]["r"].tolist() == rewards.tolist() and info["episode"]["l"].tolist() == [1] * 4
        returns += rewards.tolist()
    assert list(envs.return_queue) == returns and list(envs.length_queue) == [1] * len(returns)
    assert 0 < sum(returns) < len(returns)  # some right, some wrong: the rewards are not all alike
    envs.close()


def test_async_with_gymnasiums_defaults_sees_what_sync_sees():
    """``vectorization_mode="async"`` with no options (before: a ValueError, ImageSpace had no shared memory)."""
    sync = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="sync", **KWARGS)
    async_ = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="async", **KWARGS)
    try:
        for envs in (sync, async_):
            assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP  # Gymnasium's default
        seen = [envs.reset(seed=7) for envs in (sync, async_)]
        for step in range(4):
            answers = ANSWERS[step % STEPS]
            seen += [envs.step(answers) for envs in (sync, async_)]
        for ours, theirs in zip(seen[::2], seen[1::2]):
            obs_s, obs_a = ours[0], theirs[0]
            assert isinstance(obs_a["image"], tuple) and obs_a["prompt"] == obs_s["prompt"]
            for a, b in zip(obs_s["image"], obs_a["image"]):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(ours[1:-1], theirs[1:-1]):
                np.testing.assert_array_equal(a, b)
    finally:
        sync.close()
        async_.close()


def test_the_vector_entry_point_runs_asynchronously_too():
    envs = gym.make_vec(ENV_ID, num_envs=2, asynchronous=True, **KWARGS)
    try:
        assert isinstance(envs, gym.vector.AsyncVectorEnv)
        assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        envs.reset(seed=0)
        _, rewards, terminated, _, info = envs.step(("1", "2"))
        assert terminated.all() and rewards.tolist() == expected_rewards(info["final_info"])
    finally:
        envs.close()
    with pytest.raises(ValueError, match="num_envs must be a positive integer, got 0"):
        gym.make_vec(ENV_ID, num_envs=0)
