"""Dynamic sampling (``filter_groups``): the groups kept are verl's DAPO recipe's, the cap stops as verl's
does, the counts are logged, and a resumed run is bit-identical."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import perception_env  # noqa: F401
from agents.base import derive_seed
from agents.checkpoints import latest_checkpoint
from agents.cli import train
from agents.config import SetupError, TrainConfig
from agents.distributed import Parallel
from agents.dynamic_sampling import TooManyGenerationBatches, concat_rollouts, extra_indices
from agents.policies.qwen_vl import QwenVLPolicy
from agents.rollout import Rollout
from agents.trainer import Trainer
from tests.agents.support import ENV_KWARGS, make_config, params

G = 4


class RewardIsTheAnswer(gym.Wrapper):
    """The answer, a number as text, is the reward: the scripted policy decides every reward."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(action), terminated, truncated, info


def scripted_rollout(observations, *, seed: int, step: int, positions, unanimous: float = 0.6) -> Rollout:
    """G answers "0"/"1" per observation, drawn from the sampling seed ``(seed, step, 1, position)`` as the
    agents' are: with probability ``unanimous`` all equal, else random (some still equal by chance)."""
    texts = []
    for p in positions:
        rng = np.random.default_rng(derive_seed(seed, step, 1, p))
        if rng.random() < unanimous:
            texts += [str(int(rng.integers(2)))] * G
        else:
            texts += [str(int(v)) for v in rng.integers(0, 2, G)]
    b = len(positions)
    width = 1 + (step + len(positions)) % 3  # prompt widths that differ between batches, so concat pads
    return Rollout(
        prompt_ids=torch.arange(b * width).reshape(b, width),
        prompt_mask=torch.ones(b, width, dtype=torch.long),
        prompt_mm_token_type_ids=torch.zeros(b, width, dtype=torch.long),
        pixel_values=torch.arange(b, dtype=torch.float32).reshape(b, 1) + positions[0],
        image_grid_thw=torch.ones(b, 3, dtype=torch.long),  # one patch per image
        completion_ids=torch.tensor([[int(t)] for t in texts]),
        completion_mask=torch.ones(b * G, 1, dtype=torch.long),
        obs_index=torch.arange(b).repeat_interleave(G),
        texts=texts,
        num_samples=G,
    )


def scripted_trainer(tmp_path, seed=0, unanimous=0.6, **options) -> Trainer:
    config = TrainConfig(
        env_kwargs=ENV_KWARGS, seed=seed, prompts_per_step=4, group_size=G, filter_groups=True, **options
    )
    agent = SimpleNamespace(
        policy=SimpleNamespace(pad_token_id=-1),
        parallel=Parallel.single(),
        sample=lambda obs, step, positions: scripted_rollout(
            obs, seed=seed, step=step, positions=list(positions), unanimous=unanimous
        ),
    )
    env = RewardIsTheAnswer(gym.make(config.env_id, **config.env_make_kwargs()))
    return Trainer(agent, config, tmp_path / "run", env=env, progress=False)


def verl_dapo_kept(generation_batch, train_batch_size: int, n: int, max_num_gen_batches: int):
    """verl's recipe/dapo/dapo_ray_trainer.py fit loop, filter_groups part, on trajectories (uid, reward):
    ``generation_batch(k)`` gives the k-th new_batch as (uids [N], rewards [N]); returns the kept trajectories'
    (uid, reward) and num_gen_batches."""
    batch, num_prompt_in_batch, num_gen_batches = [], 0, 0
    while True:
        uids, rewards = generation_batch(num_gen_batches)
        num_gen_batches += 1
        prompt_uid2metric_vals = defaultdict(list)
        for uid, metric_val in zip(uids, rewards, strict=True):
            prompt_uid2metric_vals[uid].append(metric_val)
        prompt_uid2metric_std = {uid: np.std(vals) for uid, vals in prompt_uid2metric_vals.items()}
        kept_prompt_uids = [
            uid
            for uid, std in prompt_uid2metric_std.items()
            if std > 0 or len(prompt_uid2metric_vals[uid]) == 1
        ]
        num_prompt_in_batch += len(kept_prompt_uids)
        batch += [(u, r) for u, r in zip(uids, rewards) if u in kept_prompt_uids]
        if num_prompt_in_batch < train_batch_size:
            if max_num_gen_batches <= 0 or num_gen_batches < max_num_gen_batches:
                continue
            raise ValueError(f"{num_gen_batches=} >= {max_num_gen_batches=}.")
        return batch[: train_batch_size * n], num_gen_batches


def test_the_kept_groups_are_verls_step_for_step(tmp_path):
    trainer = scripted_trainer(tmp_path)
    b = trainer.config.prompts_per_step
    for step in range(6):

        def generation_batch(k, step=step):
            # the same observations and seeds as the Trainer's batch k; uid = (batch, position)
            indices = (
                trainer.order.indices(step, b) if k == 0 else extra_indices(trainer.order.size, 0, step, k, b)
            )
            texts = scripted_rollout(None, seed=0, step=step, positions=[k * b + p for p in range(b)]).texts
            uids = [(k, p, indices[p]) for p in range(b) for _ in range(G)]
            return uids, [float(t) for t in texts]

        expected, num_gen_batches = verl_dapo_kept(generation_batch, b, G, max_num_gen_batches=10)
        batch = trainer.collect(step)
        got = [(g.index, r) for g in batch.groups for r in g.rewards]
        assert got == [(uid[2], r) for uid, r in expected]
        assert len(batch.groups) == b and (batch.rewards.std(dim=1) > 0).all()
        assert batch.rollout.num_completions == b * G and batch.rollout.texts == [
            str(int(r)) for _, r in expected
        ]
        assert trainer.sampling_stats["dynamic_sampling/extra_rounds"] == num_gen_batches - 1


def test_metrics_by_hand(tmp_path):
    """Step 0: the groups each generation batch keeps, counted from the scripted answers (distinct answers
    in a group), give the counts: groups dropped = 4 per batch - kept, rollouts = 4 x G per batch / 4 kept."""
    trainer = scripted_trainer(tmp_path)
    batch = trainer.collect(0)
    kept_per_batch = []
    for k in range(int(trainer.sampling_stats["dynamic_sampling/extra_rounds"]) + 1):
        texts = scripted_rollout(None, seed=0, step=0, positions=[k * 4 + p for p in range(4)]).texts
        kept_per_batch.append(sum(len(set(texts[p * G : (p + 1) * G])) > 1 for p in range(4)))
    rounds = len(kept_per_batch)
    assert sum(kept_per_batch[:-1]) < 4 <= sum(kept_per_batch)
    assert trainer.sampling_stats == {
        "dynamic_sampling/groups_dropped": float(4 * rounds - sum(kept_per_batch)),
        "dynamic_sampling/extra_rounds": float(rounds - 1),
        "dynamic_sampling/rollouts_per_kept_group": 4 * G * rounds / 4,
        "dynamic_sampling/rollouts_total": float(4 * G * rounds),  # the run's first step
    }
    assert rounds > 1, "the script should need an extra round at step 0"
    assert len(batch.groups) == 4


def test_the_cap_stops_as_verl_does(tmp_path):
    """Every group unanimous: verl raises after max_num_gen_batches; so do we, naming the flag."""
    trainer = scripted_trainer(tmp_path, unanimous=1.0, max_num_gen_batches=3)
    calls = []
    sample = trainer.agent.sample
    trainer.agent.sample = lambda obs, step, positions: calls.append(1) or sample(obs, step, positions)
    with pytest.raises(TooManyGenerationBatches, match="--max-num-gen-batches"):
        trainer.collect(0)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="num_gen_batches=3 >= max_num_gen_batches=3"):
        verl_dapo_kept(lambda k: ([k] * G, [1.0] * G), 4, G, max_num_gen_batches=3)


def test_a_seed_fixes_the_batch_and_another_changes_it(tmp_path):
    def kept(seed):
        batch = scripted_trainer(tmp_path / str(seed), seed=seed).collect(2)
        return [(g.index, tuple(g.answers)) for g in batch.groups]

    assert kept(0) == kept(0)
    assert kept(0) != kept(1)


def test_off_by_default_and_refused_under_data_parallel(tmp_path):
    assert TrainConfig().filter_groups is False
    with pytest.raises(SetupError, match="max_num_gen_batches"):
        TrainConfig(max_num_gen_batches=-1)
    config = TrainConfig(env_kwargs=ENV_KWARGS, prompts_per_step=2, filter_groups=True)
    agent = SimpleNamespace(policy=SimpleNamespace(), parallel=Parallel(rank=0, world_size=2))
    env = gym.make(config.env_id, **config.env_make_kwargs())
    with pytest.raises(SetupError, match="--filter-groups"):
        Trainer(agent, config, tmp_path / "run", env=env, progress=False)


def test_concat_pads_prompts_left_and_completions_right():
    a = scripted_rollout(None, seed=0, step=0, positions=[0])  # width 2
    b = scripted_rollout(None, seed=0, step=0, positions=[5, 6])  # width 3
    b.completion_ids = torch.cat([b.completion_ids, b.completion_ids], dim=1)
    b.completion_mask = torch.cat([b.completion_mask, b.completion_mask], dim=1)
    c = concat_rollouts([a, b], pad_token_id=-1)
    assert c.prompt_ids[0].tolist() == [-1, 0, 1] and c.prompt_mask[0].tolist() == [0, 1, 1]
    assert c.completion_ids[0].tolist() == [a.completion_ids[0, 0], -1] and c.completion_mask[0].tolist() == [
        1,
        0,
    ]
    assert c.obs_index.tolist() == [0] * G + [1] * G + [2] * G
    assert c.texts == a.texts + b.texts and c.pixel_values.flatten().tolist() == [0.0, 5.0, 6.0]


class UnanimousOnEvenIndices(gym.Wrapper):
    """Reward 0 for every answer to an even dataset index (a unanimous group), else 0.1 x answer length."""

    def reset(self, **kwargs):
        self.index = (kwargs.get("options") or {}).get("index")
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        reward = 0.0 if self.index % 2 == 0 else 0.1 * len(action)
        return obs, reward, terminated, truncated, info


def _env():
    return UnanimousOnEvenIndices(gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS))


def _config(model, out):
    return make_config(
        "grpo", model, out, total_steps=4, group_size=3, save_every=2, filter_groups=True, beta=0.0
    )


def test_resume_after_extra_rounds_is_bit_identical(tiny_model_dir, tmp_path):
    straight = []
    train(_config(tiny_model_dir, tmp_path / "a"), progress=False, env=_env(), history=straight)
    train(_config(tiny_model_dir, tmp_path / "b"), progress=False, env=_env(), stop_at=2)
    resumed = []
    train(
        _config(tiny_model_dir, tmp_path / "b"),
        resume=str(tmp_path / "b" / "run"),
        progress=False,
        env=_env(),
        history=resumed,
    )
    extra = [row["dynamic_sampling/extra_rounds"] for row in straight]
    assert sum(extra[:2]) > 0 and sum(extra[2:]) > 0, extra  # both halves refilled
    for key in ("groups_dropped", "rollouts_total"):  # the run's total counts on from the checkpoint
        key = f"dynamic_sampling/{key}"
        assert [row[key] for row in resumed] == [row[key] for row in straight[2:]]
    spent = [row["dynamic_sampling/rollouts_per_kept_group"] * 2 for row in straight]  # 2 groups a step
    assert straight[-1]["dynamic_sampling/rollouts_total"] == sum(spent) > 4 * 2 * 3
    a = QwenVLPolicy.from_pretrained(str(latest_checkpoint(tmp_path / "a" / "run") / "policy")).model
    b = QwenVLPolicy.from_pretrained(str(latest_checkpoint(tmp_path / "b" / "run") / "policy")).model
    pa, pb = params(a), params(b)
    assert any(
        not torch.equal(pa[k], v)
        for k, v in params(QwenVLPolicy.from_pretrained(tiny_model_dir).model).items()
    )
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0, msg=k)


def test_train_help_lists_the_options_with_verls_names():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "--filter-groups" in done.stdout and "--max-num-gen-batches" in done.stdout
