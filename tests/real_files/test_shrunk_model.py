"""A model built from each released config.json (shrunk, random, seeded) with the released tokenizer,
template, preprocessor and generation files goes through the whole loop: QwenVLPolicy.from_pretrained,
G sampled answers scored by the env, one GRPO update, save_pretrained -> from_pretrained.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.real_files.support import (
    MAX_PIXELS,
    MIN_PIXELS,
    QWEN2_VL,
    QWEN25_VL,
    SPECIAL_IDS,
    make_env,
    require_real_files,
    vision_template,
)

require_real_files()

from agents.grpo.agent import GRPOAgent  # noqa: E402
from agents.grpo.config import GRPOConfig  # noqa: E402
from agents.policies.qwen_vl import VISION_SPECIAL_TOKENS, QwenVLPolicy  # noqa: E402
from agents.trainer import Trainer  # noqa: E402

G = 4
# each model on a task in its own answer format (Qwen2-VL box tokens, Qwen2.5-VL JSON in resized pixels)
TASKS = {
    QWEN2_VL: ("PerceptionR1/Grounding-v0", "qwen2-vl"),
    QWEN25_VL: ("PerceptionR1/Detection-v0", "qwen2.5-vl"),
}
TOKENIZER_SIZES = {QWEN2_VL: 151_657, QWEN25_VL: 151_665}


class LengthBonus(gym.Wrapper):
    """The env's reward + 0.1 x answer length: a random model's answers all score 0 on the task, and a
    group of equal rewards has no advantage to learn from (as in tests/agents/test_conformance.py)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward + 0.1 * len(action), terminated, truncated, info


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_trainer(name, folder, out):
    env_id, fmt = TASKS[name]
    config = GRPOConfig(
        env_id=env_id,
        env_kwargs={"difficulty": "easy", "answer_format": fmt},
        model=str(folder),
        output_dir=str(out),
        run_name="run",
        total_steps=1,
        prompts_per_step=1,
        group_size=G,
        max_new_tokens=5,
        learning_rate=1e-2,
        beta=0.04,
        seed=3,
        log_every=0,
        log_samples_every=0,
        save_every=100,
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
    )
    policy = QwenVLPolicy.from_pretrained(folder, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    env = LengthBonus(make_env(env_id, fmt))
    return Trainer(GRPOAgent(policy, config), config, out / "run", env=env, progress=False)


@pytest.fixture(scope="module")
def loaded(shrunk_dirs) -> dict:
    """``QwenVLPolicy.from_pretrained`` of each shrunk checkpoint (tests that do not train share them)."""
    return {name: QwenVLPolicy.from_pretrained(folder) for name, folder in shrunk_dirs.items()}


@pytest.mark.parametrize("name", [QWEN2_VL, QWEN25_VL])
def test_shrunk_checkpoint_keeps_released_vocabulary_and_ids(name, loaded):
    """The shrunk model has the released embedding rows, special-token ids and tokenizer."""
    policy = loaded[name]
    config = policy.model.config
    assert config.text_config.vocab_size == 151_936 and config.tie_word_embeddings
    assert policy.model.get_input_embeddings().weight.shape == (151_936, 64)
    assert policy.model.lm_head.weight.data_ptr() == policy.model.get_input_embeddings().weight.data_ptr()
    assert (config.image_token_id, config.vision_start_token_id, config.vision_end_token_id) == (
        151655,
        151652,
        151653,
    )
    assert len(policy.tokenizer) == TOKENIZER_SIZES[name]
    assert policy.pad_token_id == 151643 and policy.stop_token_ids == [151645, 151643]
    assert policy.vision_token_ids == [SPECIAL_IDS[t] for t in VISION_SPECIAL_TOKENS]


@pytest.mark.parametrize("name", [QWEN2_VL, QWEN25_VL])
def test_released_generation_config_does_not_leak_into_sampling(name, loaded, monkeypatch):
    """The released generation_config.json says temperature 0.01/0.1, top-k 1, top-p 0.001 (and repetition
    penalty 1.05 for Qwen2.5-VL); generate() must sample the model's own distribution all the same."""
    policy = loaded[name]
    assert policy.model.generation_config.top_k == 1  # the released file is in force
    used = []
    prepare = policy.model._prepare_generation_config

    def record(*args, **kwargs):
        out = prepare(*args, **kwargs)
        used.append(out[0])
        return out

    monkeypatch.setattr(policy.model, "_prepare_generation_config", record)
    observation, _ = make_env(*TASKS[name]).reset(options={"index": 0})
    policy.generate([observation], num_samples=2, max_new_tokens=2, generator_seed=0)
    policy.generate([observation], num_samples=2, max_new_tokens=2, do_sample=False)
    sampled, greedy = used
    assert (sampled.do_sample, sampled.temperature, sampled.top_k, sampled.top_p) == (True, 1.0, 0, 1.0)
    assert not greedy.do_sample
    for config in (sampled, greedy):
        assert config.repetition_penalty == 1.0 and config.eos_token_id == [151645, 151643]
        assert config.pad_token_id == 151643 and config.suppress_tokens == policy.vision_token_ids


@pytest.mark.parametrize("name", [QWEN2_VL, QWEN25_VL])
def test_sample_score_update_save_reload(name, shrunk_dirs, tmp_path):
    """Through the Trainer's collection: G distinct answers, the same again for the same seeded step, no
    vision token; env rewards in [0, max_reward]; one GRPO update (finite metrics, the embedding and the
    vision tower move); save_pretrained -> from_pretrained gives identical prompts and completion log-probs."""
    trainer = make_trainer(name, shrunk_dirs[name], tmp_path)
    agent, policy = trainer.agent, trainer.agent.policy
    batch = trainer.collect(0)
    rollout = batch.rollout
    texts = list(rollout.texts)
    assert len(texts) == G and len(set(texts)) == G, texts
    assert list(trainer.collect(0).rollout.texts) == texts  # seeded: the same step samples the same answers
    assert not set(rollout.completion_ids[rollout.completion_mask.bool()].tolist()) & set(
        policy.vision_token_ids
    )
    assert rollout.completion_mask.sum(1).le(5).all()

    (group,) = batch.groups
    for answer, reward, info in zip(group.answers, group.rewards, group.infos):
        assert 0.0 <= info["reward"] <= info["max_reward"] and np.isfinite(info["reward"])
        assert reward == pytest.approx(info["reward"] + 0.1 * len(answer))
        assert info["answer_format"] == TASKS[name][1]
    assert batch.rewards.shape == (1, G) and batch.rewards.std() > 0

    before = params(policy.model)
    metrics = agent.update(batch)
    after = params(policy.model)
    assert metrics and all(isinstance(v, float) and np.isfinite(v) for v in metrics.values()), metrics
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "model.language_model.embed_tokens.weight" in changed and any(".visual." in k for k in changed)

    saved = policy.save_pretrained(tmp_path / name)
    # the processor's template is saved as the released vision template, verbatim
    assert (saved / "chat_template.jinja").read_text(encoding="utf-8") == vision_template(name)
    reloaded = QwenVLPolicy.from_pretrained(saved, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    assert len(reloaded.tokenizer) == TOKENIZER_SIZES[name]
    observation = group.observation
    assert reloaded.chat_text(observation["prompt"]) == policy.chat_text(observation["prompt"])
    for key, value in policy.encode_prompts([observation]).items():
        assert torch.equal(reloaded.encode_prompts([observation])[key], value), key
    policy.model.eval()
    with torch.no_grad():
        expected = policy.completion_logprobs(rollout)
        got = reloaded.completion_logprobs(rollout)
    assert torch.equal(got, expected)
    assert (expected[rollout.completion_mask.bool()] < 0).all()
