"""A new RL algorithm in under 100 lines: REINFORCE with a running-mean baseline, on the shared Trainer.

    python examples/custom_agent.py --steps 3
    perception-r1 train --agent examples/custom_agent.py:ReinforceAgent --model runs/tiny --env-kwargs '{"answer_format": "number"}' --baseline-momentum 0.5  # the CLI; runs/tiny: perception-r1 make-tiny-model runs/tiny

The Trainer collects B observations x G answers and scores them; an agent only implements
``update(batch) -> metrics``. Options are a ``TrainConfig`` subclass (typed fields with help text),
and anything the agent must remember across steps goes in ``state_dict`` so checkpoints resume it.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

import perception_env  # noqa: F401  (registers the envs)
from agents.base import Agent, RolloutBatch
from agents.config import TrainConfig, opt
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.trainer import Trainer


@dataclass
class ReinforceConfig(TrainConfig):
    baseline_momentum: float = opt(0.9, "Running-mean baseline: b <- m * b + (1 - m) * mean reward.")

    @property
    def agent_name(self) -> str:
        return "reinforce"


class ReinforceAgent(Agent):
    """loss = -(r - b) * log pi(answer), b a running mean of past rewards (not of this group)."""

    name = "reinforce"
    config_class = ReinforceConfig  # what `perception-r1 train --agent file.py:ReinforceAgent` builds

    def __init__(self, policy, config: ReinforceConfig):
        super().__init__(policy, config)
        self.baseline = 0.0

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        rewards = batch.rewards.flatten()  # [N] group-major, like the rollout's rows
        advantages = rewards - self.baseline  # [N]
        mask = batch.rollout.completion_mask.float()  # [N, T]
        self.policy.model.train()
        logp = self.logprobs(batch.rollout)  # [N, T], differentiable (and synchronised across ranks)
        loss = -(advantages.unsqueeze(1) * logp * mask).sum(dim=1).mean()
        loss.backward()
        grad_norm = self.clip_and_step(step=batch.step, loss=float(loss))
        m = self.config.baseline_momentum
        self.baseline = m * self.baseline + (1 - m) * float(rewards.mean())
        return {"loss": float(loss.detach()), "baseline": self.baseline, "grad_norm": grad_norm}

    def state_dict(self):
        return {**super().state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.baseline = state["baseline"]


class AnswerLengthBonus(gym.Wrapper):
    """+0.1 per character, so a random tiny model's answers differ in reward and there is a signal."""

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward + 0.1 * len(action), terminated, truncated, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="reinforce-"))
    model = build_tiny_model(out / "tiny-model", arch="qwen2-vl", preset="tiny", seed=0)
    config = ReinforceConfig(
        env_id="PerceptionR1/Counting-v0", env_kwargs={"difficulty": "easy", "answer_format": "number"},
        model=str(model), total_steps=args.steps, prompts_per_step=2, group_size=4,
        max_new_tokens=4, learning_rate=1e-3, log_samples_every=0, save_every=1000,
    )
    env = AnswerLengthBonus(gym.make(config.env_id, **config.env_kwargs))
    agent = ReinforceAgent(QwenVLPolicy.from_pretrained(str(model)), config)
    for step, row in enumerate(Trainer(agent, config, out / "run", env=env, progress=False).train(), 1):
        print(f"step {step}: reward {row['reward/mean']:.3f} baseline {row['train/baseline']:.3f}"
              f" loss {row['train/loss']:.3f}")
    print(f"checkpoint with the baseline in it: {out / 'run' / 'checkpoints'}")


if __name__ == "__main__":
    main()
