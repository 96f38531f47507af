"""TRL: the reward function called as GRPOTrainer calls it, the dataset in its layout, and a real 2-step run."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import perception_env  # noqa: F401  (registers the envs)
from perception_env.integrations import completion_text, trl_dataset, trl_reward

ENV_ID, KWARGS = "PerceptionR1/Counting-v0", {"difficulty": "easy", "answer_format": "number"}


def stepped(env_id: str, kwargs: dict, index: int, answer: str) -> float:
    """What ``env.step`` gives ``answer`` to sample ``index`` of a fresh env."""
    env = gym.make(env_id, **kwargs)
    env.reset(options={"index": index})
    return env.step(answer)[1]


def test_the_dataset_is_trls_vision_layout():
    data = trl_dataset(ENV_ID, limit=3, **KWARGS)
    assert data.column_names == ["image", "prompt", "sample_index", "sample_id"] and len(data) == 3
    env = gym.make(ENV_ID, **KWARGS)
    for row in data:
        observation, info = env.reset(options={"index": row["sample_index"]})
        assert row["prompt"] == [{"role": "user", "content": observation["prompt"]}]
        assert row["sample_id"] == info["sample_id"]
        np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), observation["image"])


def test_the_reward_takes_strings_and_chat_messages_as_trl_passes_them():
    reward = trl_reward(ENV_ID, **KWARGS)
    data = trl_dataset(ENV_ID, limit=2, **KWARGS)
    env = gym.make(ENV_ID, **KWARGS)
    env.reset(options={"index": 1})
    truth = env.unwrapped.oracle_answer()
    texts = ["3", truth, "many", truth]
    columns = {
        "sample_index": [0, 1, 1, 0],
        "sample_id": [data[i]["sample_id"] for i in (0, 1, 1, 0)],
        "image": [None] * 4,  # TRL passes every column, and its own extras
        "trainer_state": None,
        "log_metric": print,
    }
    expected = [stepped(ENV_ID, KWARGS, i, t) for i, t in zip(columns["sample_index"], texts)]
    prompts = [row["prompt"] for row in (data[0], data[1], data[1], data[0])]
    assert reward(prompts, texts, **columns) == expected
    chat = [[{"role": "assistant", "content": t}] for t in texts]
    assert reward(prompts, chat, completion_ids=None, **columns) == expected
    blocks = [[{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in texts]
    assert reward(prompts, blocks, **columns) == expected
    assert expected[1] == 1.0 and reward.__name__ == "perception_counting"


def test_the_reward_says_what_is_wrong_with_its_input():
    reward = trl_reward(ENV_ID, **KWARGS)
    with pytest.raises(KeyError, match="needs the dataset's sample_index column"):
        reward(["p"], ["3"], image=[None])
    other = trl_dataset(ENV_ID, limit=2, **{**KWARGS, "split": "test"})
    with pytest.raises(
        ValueError, match="names sample .* build the reward and the dataset with the same env"
    ):
        reward(["p"], ["3"], sample_index=[1], sample_id=[other[1]["sample_id"]])
    with pytest.raises(TypeError, match="a completion is a string or a list of chat messages"):
        completion_text(42)
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        trl_dataset(ENV_ID, limit=0, **KWARGS)


@pytest.mark.slow
def test_grpo_trainer_two_steps_logs_the_rewards_env_step_gives(tiny_model_dir, one_torch_thread, tmp_path):
    """A real TRL GRPOTrainer run on the tiny model (CPU): every completion's reward, and the rewards TRL logs,
    are env.step's. OCR's edit-distance reward scores random text above 0, so the rewards differ."""
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from agents.policies.processor import load_processor

    env_id, kwargs = "PerceptionR1/OCR-v0", {"difficulty": "easy"}
    reward = trl_reward(env_id, **kwargs)
    seen = []

    def recorded(prompts, completions, **columns):
        rewards = reward(prompts, completions, **columns)
        seen.append(list(zip(completions, columns["sample_index"], rewards)))
        return rewards

    recorded.__name__ = reward.__name__
    trainer = GRPOTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
        processing_class=load_processor(tiny_model_dir),
        reward_funcs=recorded,
        train_dataset=trl_dataset(env_id, limit=8, **kwargs),
        args=GRPOConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=8,
            max_steps=2,
            logging_steps=1,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            seed=0,
            disable_tqdm=True,
        ),
    )
    trainer.train()
    logged = [h["rewards/perception_ocr/mean"] for h in trainer.state.log_history if "reward" in h]
    assert len(seen) == len(logged) == 2
    for step, batch in zip(logged, seen):
        expected = [stepped(env_id, kwargs, i, completion_text(c)) for c, i, _ in batch]
        assert [r for _, _, r in batch] == expected
        assert step == pytest.approx(np.mean(expected), rel=1e-6)
    assert len({r for batch in seen for _, _, r in batch}) > 1
