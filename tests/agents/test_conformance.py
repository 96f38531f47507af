"""Every registered agent honours the Agent contract on the tiny model (one suite, parametrised).

Collect -> update moves the parameters with finite metrics; a checkpoint restores the
optimiser exactly; the same seed gives the same parameters.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

import perception_env  # noqa: F401
from agents.base import Agent
from agents.config import TrainConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.registry import AGENTS
from agents.trainer import Trainer

ENV_KWARGS = {"difficulty": "easy", "answer_format": "number"}


class AnswerLengthBonus(gym.Wrapper):
    """0.1 x answer length added to the reward: a random tiny model's groups then always disagree."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward + 0.1 * len(action), terminated, truncated, info


def make_config(name, model, out, **overrides):
    _, config_cls = AGENTS[name]
    values = dict(
        env_id="PerceptionR1/Counting-v0", env_kwargs=ENV_KWARGS, model=model, output_dir=str(out),
        run_name="run", total_steps=2, prompts_per_step=2, group_size=3, max_new_tokens=3,
        learning_rate=1e-2, save_every=100, log_every=0, log_samples_every=0, beta=0.04,
        lr_scheduler="linear",
    )
    values.update(overrides)
    return config_cls(**values)


def make_trainer(name, model, out, policy=None, **overrides):
    config = make_config(name, model, out, **overrides)
    agent_cls, _ = AGENTS[name]
    policy = policy or QwenVLPolicy.from_pretrained(model)
    env = AnswerLengthBonus(gym.make(config.env_id, **config.env_kwargs))
    return Trainer(agent_cls(policy, config), config, out / "run", env=env, progress=False)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(params=sorted(AGENTS))
def name(request):
    return request.param


def test_registry_pairs_agents_with_their_configs(name):
    agent_cls, config_cls = AGENTS[name]
    assert issubclass(agent_cls, Agent) and issubclass(config_cls, TrainConfig)
    assert agent_cls.name == name == config_cls().agent_name


def test_update_changes_parameters_with_finite_metrics(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    before = params(trainer.agent.policy.model)
    batch = trainer.collect(0)
    assert batch.rewards.shape == (2, 3) and (batch.rewards.std(dim=1) > 0).all()
    metrics = trainer.agent.update(batch)
    after = params(trainer.agent.policy.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert metrics and all(isinstance(v, float) and np.isfinite(v) for v in metrics.values()), metrics
    assert {"loss", "kl", "entropy", "grad_norm", "learning_rate", "frac_reward_zero_std"} <= set(metrics)


def test_checkpoint_round_trip_restores_optimizer_and_policy(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    trainer.train(stop_at=1)
    checkpoint = trainer.save_checkpoint()
    fresh = make_trainer(
        name, tiny_model_dir, tmp_path, policy=QwenVLPolicy.from_pretrained(str(checkpoint / "policy"))
    )
    fresh.load_state(checkpoint)
    assert fresh.step == 1
    saved, loaded = trainer.agent.state_dict(), fresh.agent.state_dict()
    assert saved["scheduler"] == loaded["scheduler"]
    assert saved["optimizer"]["param_groups"] == loaded["optimizer"]["param_groups"]
    assert saved["optimizer"]["state"].keys() == loaded["optimizer"]["state"].keys()
    for key, state in saved["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(value, loaded["optimizer"]["state"][key][field]), (key, field)
    a, b = params(trainer.agent.policy.model), params(fresh.agent.policy.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_same_parameters(name, tiny_model_dir, tmp_path):
    runs = []
    for run in ("a", "b"):
        trainer = make_trainer(name, tiny_model_dir, tmp_path / run, seed=7)
        trainer.train()
        runs.append(params(trainer.agent.policy.model))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k
