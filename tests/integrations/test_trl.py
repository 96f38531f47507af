"""TRL: the reward function called as GRPOTrainer calls it (completion_ids decoded keeping special tokens), the
dataset in its layout with its image bounds, and real 2-step runs."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import perception_env  # noqa: F401  (registers the envs)
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from perception_env.integrations import completion_text, trl_dataset, trl_reward

ENV_ID, KWARGS = "PerceptionR1/Counting-v0", {"difficulty": "easy", "answer_format": "number"}
# grounding in Qwen2-VL's box tokens, with format credit: an answer that lost its tokens scores 0.2 less
GROUNDING, GROUNDING_KWARGS = (
    "PerceptionR1/Grounding-v0",
    {"difficulty": "easy", "answer_format": "qwen2-vl", "reward_config": {"format_weight": 0.2}},
)
QWEN2_VL = Path(__file__).parents[1] / "fixtures" / "qwen-vl-real" / "Qwen2-VL-2B-Instruct"


@pytest.fixture(scope="module")
def qwen2_vl_tokenizer():
    """Qwen2-VL's released tokenizer (its files only): box and ref tokens are special tokens there."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN2_VL)


def stepped(env_id: str, kwargs: dict, index: int, answer: str) -> float:
    """What ``env.step`` gives ``answer`` to sample ``index`` of a fresh env."""
    env = gym.make(env_id, **kwargs)
    env.reset(options={"index": index})
    return env.step(answer)[1]


def test_the_dataset_is_trls_vision_layout():
    data = trl_dataset(ENV_ID, limit=3, **KWARGS)
    columns = ["image", "prompt", "sample_index", "sample_id", "min_pixels", "max_pixels"]
    assert data.column_names == columns and len(data) == 3
    env = gym.make(ENV_ID, **KWARGS)
    for row in data:
        observation, info = env.reset(options={"index": row["sample_index"]})
        assert row["prompt"] == [{"role": "user", "content": observation["prompt"]}]
        assert row["sample_id"] == info["sample_id"]
        assert (row["min_pixels"], row["max_pixels"]) == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
        np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), observation["image"])


def test_the_dataset_records_the_bounds_it_was_made_with_and_the_reward_checks_them():
    other = {**KWARGS, "min_pixels": 6272, "max_pixels": 200_704}
    data = trl_dataset(ENV_ID, limit=2, **other)
    assert set(data["min_pixels"]) == {6272} and set(data["max_pixels"]) == {200_704}
    rows = {"sample_index": data["sample_index"], "sample_id": data["sample_id"]}
    bounds = {"min_pixels": data["min_pixels"], "max_pixels": data["max_pixels"]}
    assert trl_reward(ENV_ID, **other)(["p"] * 2, ["1", "2"], **rows, **bounds) == [
        stepped(ENV_ID, other, i, t) for i, t in zip(data["sample_index"], ["1", "2"])
    ]
    with pytest.raises(
        ValueError, match="made with min_pixels=6272 but this reward's env has min_pixels=3136"
    ):
        trl_reward(ENV_ID, **KWARGS)(["p"] * 2, ["1", "2"], **rows, **bounds)


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
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        trl_reward(ENV_ID, limit=True, **KWARGS)


def test_the_reward_takes_the_datasets_limit():
    """``limit=`` as ``trl_dataset`` takes it: the rows of that dataset are scored, a row past it is refused."""
    data = trl_dataset(ENV_ID, limit=3, **KWARGS)
    reward = trl_reward(ENV_ID, limit=3, **KWARGS)
    rows = {"sample_index": data["sample_index"], "sample_id": data["sample_id"]}
    assert reward(["p"] * 3, ["1", "2", "3"], **rows) == [
        stepped(ENV_ID, KWARGS, i, t) for i, t in zip(range(3), ["1", "2", "3"])
    ]
    with pytest.raises(ValueError, match=r"rows name samples \[3\] but this reward scores samples 0..2"):
        reward(["p"], ["1"], sample_index=[3])


def test_the_reward_decodes_completion_ids_keeping_box_tokens(qwen2_vl_tokenizer):
    """TRL's text has lost the box tokens (0.2 of format credit); the ids decoded here have not."""
    env = gym.make(GROUNDING, **GROUNDING_KWARGS)
    env.reset(options={"index": 0})
    raw = env.unwrapped.oracle_answer()
    assert raw.startswith("<|object_ref_start|>") and raw.endswith("<|box_end|>")
    ids = qwen2_vl_tokenizer.encode(raw) + [qwen2_vl_tokenizer.eos_token_id]  # TRL keeps the stop token
    trls_text = qwen2_vl_tokenizer.decode(ids, skip_special_tokens=True)  # what GRPOTrainer decodes
    assert "<|box_start|>" not in trls_text
    full, stripped = (
        stepped(GROUNDING, GROUNDING_KWARGS, 0, raw),
        stepped(GROUNDING, GROUNDING_KWARGS, 0, trls_text),
    )
    assert full == pytest.approx(stripped + 0.2) and full > 1.0
    reward = trl_reward(GROUNDING, processing_class=qwen2_vl_tokenizer, **GROUNDING_KWARGS)
    chat = [[{"role": "assistant", "content": trls_text}]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decoding the ids needs no fallback
        assert reward(["p"], chat, completion_ids=[ids], sample_index=[0]) == [full]
    processor_like = type("Processor", (), {"tokenizer": qwen2_vl_tokenizer})()  # a processor: its tokenizer
    assert trl_reward(GROUNDING, processing_class=processor_like, **GROUNDING_KWARGS)(
        ["p"], chat, completion_ids=[ids], sample_index=[0]
    ) == [full]


def test_without_the_tokenizer_or_the_ids_the_reward_warns_once_and_scores_trls_text(qwen2_vl_tokenizer):
    env = gym.make(GROUNDING, **GROUNDING_KWARGS)
    env.reset(options={"index": 0})
    trls_text = qwen2_vl_tokenizer.decode(
        qwen2_vl_tokenizer.encode(env.unwrapped.oracle_answer()), skip_special_tokens=True
    )
    expected = [stepped(GROUNDING, GROUNDING_KWARGS, 0, trls_text)]
    for reward, missing in (
        (trl_reward(GROUNDING, **GROUNDING_KWARGS), "no processing_class"),
        (trl_reward(GROUNDING, processing_class=qwen2_vl_tokenizer, **GROUNDING_KWARGS), "no completion_ids"),
    ):
        with pytest.warns(
            UserWarning, match=f"skip_special_tokens=True \\({missing}\\).*lose Qwen2-VL's ref/box"
        ):
            assert reward(["p"], [trls_text], completion_ids=None, sample_index=[0]) == expected
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per reward function
            assert reward(["p"], [trls_text], sample_index=[0]) == expected


def test_a_processor_with_other_image_bounds_than_the_env_is_warned_about(qwen2_vl_tokenizer):
    from agents.policies.processor import load_processor

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # load_processor's defaults are the env's
        trl_reward(GROUNDING, processing_class=load_processor(QWEN2_VL), **GROUNDING_KWARGS)
    checkpoints_own = load_processor(QWEN2_VL, min_pixels=None, max_pixels=None)  # 3136..12,845,056
    with pytest.warns(
        UserWarning, match="resizes images to 3136..12845056 pixels but the env to 3136..1000000"
    ):
        trl_reward(GROUNDING, processing_class=checkpoints_own, **GROUNDING_KWARGS)


def two_step_config(tmp_path, **options):
    """TRL's GRPOConfig for two logged CPU steps of 4 prompts x 4 answers, no saving or reporting."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_steps=2,
        logging_steps=1,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        **options,
    )


@pytest.mark.slow
def test_grpo_trainer_two_steps_logs_the_rewards_env_step_gives(tiny_model_dir, one_torch_thread, tmp_path):
    """A real TRL GRPOTrainer run on the tiny model (CPU): every completion's reward, and the rewards TRL logs,
    are env.step's. OCR's edit-distance reward scores random text above 0, so the rewards differ."""
    from transformers import AutoModelForImageTextToText
    from trl import GRPOTrainer

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
        args=two_step_config(tmp_path, max_completion_length=8),
    )
    trainer.train()
    logged = [h["rewards/perception_ocr/mean"] for h in trainer.state.log_history if "reward" in h]
    assert len(seen) == len(logged) == 2
    for step, batch in zip(logged, seen):
        expected = [stepped(env_id, kwargs, i, completion_text(c)) for c, i, _ in batch]
        assert [r for _, _, r in batch] == expected
        assert step == pytest.approx(np.mean(expected), rel=1e-6)
    assert len({r for batch in seen for _, _, r in batch}) > 1


@pytest.mark.slow
def test_grpo_trainer_on_grounding_in_box_tokens_logs_env_step_of_what_the_model_wrote(
    tiny_model_dir, one_torch_thread, tmp_path
):
    """A real GRPOTrainer run on grounding in the qwen2-vl format. Generation is steered (transformers'
    sequence_bias) to a well-formed box-token answer; TRL's own text of it has lost the tokens (0.2 less), and
    the rewards logged are env.step's of the completion ids decoded keeping special tokens."""
    from transformers import AutoModelForImageTextToText
    from trl import GRPOTrainer

    from agents.policies.processor import load_processor

    processor = load_processor(tiny_model_dir)
    tokenizer = processor.tokenizer
    steered = tokenizer.encode("<|box_start|>(100,100),(900,900)<|box_end|>") + [tokenizer.eos_token_id]
    # the first token likely, each next one likelier still once its prefix is there: every answer is this one
    bias = {(steered[0],): 20.0} | {tuple(steered[: k + 1]): 60.0 for k in range(1, len(steered))}
    reward = trl_reward(GROUNDING, processing_class=processor, limit=8, **GROUNDING_KWARGS)
    seen = []

    def recorded(prompts, completions, completion_ids, **columns):
        rewards = reward(prompts, completions, completion_ids=completion_ids, **columns)
        seen.append(list(zip(completions, completion_ids, columns["sample_index"], rewards)))
        return rewards

    recorded.__name__ = reward.__name__
    trainer = GRPOTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
        processing_class=processor,
        reward_funcs=recorded,
        train_dataset=trl_dataset(GROUNDING, limit=8, **GROUNDING_KWARGS),
        args=two_step_config(
            tmp_path, max_completion_length=len(steered) + 2, generation_kwargs={"sequence_bias": bias}
        ),
    )
    trainer.train()
    logged = [h["rewards/perception_grounding/mean"] for h in trainer.state.log_history if "reward" in h]
    assert len(seen) == len(logged) == 2
    for step, batch in zip(logged, seen):
        raw = [tokenizer.decode(ids, skip_special_tokens=False) for _, ids, _, _ in batch]
        expected = [stepped(GROUNDING, GROUNDING_KWARGS, i, text) for text, (_, _, i, _) in zip(raw, batch)]
        assert [r for *_, r in batch] == expected
        assert step == pytest.approx(np.mean(expected), rel=1e-6)
        for text, (completion, ids, i, r) in zip(raw, batch):
            trls_text = completion_text(completion)  # chat messages: the prompts are
            assert list(ids) == steered and "<|box_start|>" in text and "<|box_start|>" not in trls_text
            assert r == pytest.approx(stepped(GROUNDING, GROUNDING_KWARGS, i, trls_text) + 0.2)
