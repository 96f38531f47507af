"""verl and EasyR1: the parquet export read back as they read it, and the reward function called as their
reward managers call it (loaded from its file by path, keyword arguments; verl is not installed here)."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import perception_env
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from perception_env.integrations import verl as verl_module

CASES = {
    "PerceptionR1/Detection-v0": {"difficulty": "easy"},
    "PerceptionR1/Counting-v0": {"difficulty": "easy", "answer_format": "number"},
    "PerceptionR1/Grounding-v0": {"difficulty": "easy", "answer_format": "qwen2.5-vl"},
    "PerceptionR1/OCR-v0": {"difficulty": "easy"},
}


def load_by_path(path: str, name: str):
    """As verl's get_custom_reward_fn and EasyR1's FunctionRewardManager load a reward function."""
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def answers(env) -> list[str]:
    """A perfect answer, a near miss, nonsense: three rewards that differ."""
    oracle = env.unwrapped.oracle_answer()
    return [oracle, oracle[: len(oracle) // 2], "no idea"]


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_verl_reward_manager_call_gives_env_step_rewards(env_id, tmp_path):
    from datasets import load_dataset

    path = verl_module.export_parquet(env_id, tmp_path / "train.parquet", limit=3, **CASES[env_id])
    data = load_dataset("parquet", data_files=str(path), split="train")  # what verl's RLHFDataset does
    compute_score = load_by_path(verl_module.__file__, "compute_score")
    env = gym.make(env_id, **CASES[env_id])
    for row in data:
        observation, info = env.reset(options={"index": row["extra_info"]["index"]})
        assert row["data_source"] == env_id and row["extra_info"]["sample_id"] == info["sample_id"]
        assert row["prompt"] == [{"role": "user", "content": "<image>" + observation["prompt"]}]
        image = row["images"][0]  # the PNG, and the frame for qwen-vl-utils' fetch_image
        assert (image["min_pixels"], image["max_pixels"]) == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
        pixels = np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"))
        np.testing.assert_array_equal(pixels, observation["image"])
        extra_info = dict(row["extra_info"], num_turns=None)  # verl's NaiveRewardManager adds num_turns
        for answer in answers(env):
            score = compute_score(
                data_source=row["data_source"],
                solution_str=answer,
                ground_truth=row["reward_model"]["ground_truth"],
                extra_info=extra_info,
            )
            env.reset(options={"index": row["extra_info"]["index"]})
            assert score == env.step(answer)[1], (env_id, answer)


def test_easyr1_reward_function_call(tmp_path):
    from datasets import load_dataset

    env_id = "PerceptionR1/Counting-v0"
    path = verl_module.export_parquet(env_id, tmp_path / "train.parquet", limit=2, **CASES[env_id])
    data = load_dataset("parquet", data_files=str(path), split="train")
    reward_fn = load_by_path(verl_module.__file__, "easyr1_compute_score")
    batch_fn = load_by_path(verl_module.__file__, "easyr1_compute_score_batch")
    env = gym.make(env_id, **CASES[env_id])
    for row in data:
        assert row["problem"].startswith("<image>") and row["answer"] == row["reward_model"]["ground_truth"]
        env.reset(options={"index": row["extra_info"]["index"]})
        truth = env.unwrapped.oracle_answer()
        inputs = [
            {"response": a, "response_length": 1, "ground_truth": row["answer"]} for a in (truth, "lots")
        ]
        assert [reward_fn(i) for i in inputs] == batch_fn(inputs)
        assert batch_fn(inputs) == [
            {"overall": 1.0, "format": 1.0, "accuracy": 1.0},
            {"overall": 0.0, "format": 0.0, "accuracy": 0.0},
        ]


def test_the_ground_truth_carries_the_scoring_options():
    """A reward option and the image frame travel with the sample: the file alone gives the env's reward."""
    from perception_env.integrations import ground_truth, score_ground_truth

    kwargs = {"difficulty": "easy", "answer_format": "number", "reward_config": {"kind": "ratio"}}
    env = gym.make("PerceptionR1/Counting-v0", **kwargs).unwrapped
    env.reset(options={"index": 0})
    n = int(env.oracle_answer())
    truth = ground_truth(env, env.sample)
    carried = json.loads(truth)["reward_config"]
    assert carried["kind"] == "ratio" and carried == dataclasses.asdict(env.reward_config)  # every option
    assert score_ground_truth(str(n + 1), truth).reward == pytest.approx(n / (n + 1))  # ratio, not exact (0)
    assert score_ground_truth(str(n + 1), truth).reward == env.score(str(n + 1)).reward
    with pytest.raises(ValueError, match="not a perception_env ground truth"):
        score_ground_truth("3", "42")  # e.g. a math data source's answer sent to this reward
    with pytest.raises(ValueError, match="ground truth is not JSON"):
        score_ground_truth("3", "{oops")


def test_the_export_warns_when_verls_decoding_would_strip_the_answer_format(tmp_path):
    """verl and EasyR1 decode with skip_special_tokens=True: a box-token format is warned about, the JSON one not."""
    kwargs = {"difficulty": "easy", "answer_format": "qwen2-vl"}
    with pytest.warns(
        UserWarning, match="skip_special_tokens=True, so its 'qwen2-vl' answers lose Qwen2-VL's"
    ):
        verl_module.export_parquet("PerceptionR1/Grounding-v0", tmp_path / "a.parquet", limit=1, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for env_id, kwargs in CASES.items():
            verl_module.export_parquet(env_id, tmp_path / "b.parquet", limit=1, **kwargs)


def test_the_images_carry_the_envs_own_bounds(tmp_path):
    from datasets import load_dataset

    kwargs = {**CASES["PerceptionR1/Counting-v0"], "min_pixels": 6272, "max_pixels": 200_704}
    path = verl_module.export_parquet("PerceptionR1/Counting-v0", tmp_path / "c.parquet", limit=2, **kwargs)
    for row in load_dataset("parquet", data_files=str(path), split="train"):
        assert [(i["min_pixels"], i["max_pixels"]) for i in row["images"]] == [(6272, 200_704)]
        truth = json.loads(row["reward_model"]["ground_truth"])
        assert (truth["min_pixels"], truth["max_pixels"]) == (6272, 200_704)


def test_every_task_is_covered():
    assert sorted(CASES) == sorted(perception_env.ENV_IDS)
