"""A new RL algorithm in under 100 lines: REINFORCE with a running-mean baseline, on the shared Trainer.

    python examples/custom_agent.py --steps 3
    perception-r1 train --agent examples/custom_agent.py:ReinforceAgent --model runs/tiny --env-kwargs '{"answer_format": "number"}' --baseline-momentum 0.5 --total-steps 20 --max-new-tokens 4  # the CLI, under a minute (the default 768-token answers of a random model: a minute a step); runs/tiny: perception-r1 make-tiny-model runs/tiny

The Trainer collects B observations x G answers and scores them; the Agent base class runs the update
(micro-batches, the optimiser step, the metrics), so an algorithm is its maths: ``advantages(rewards)``
and ``loss(...)``. Options are a ``TrainConfig`` subclass (typed fields with help text), and anything the
agent must remember across steps goes in ``state_dict`` so checkpoints resume it.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

import perception_env  # noqa: F401  (registers the envs)
from agents.base import Agent
from agents.build import build_run
from agents.config import TrainConfig, opt
from agents.policies.tiny_model import build_tiny_model


@dataclass
class ReinforceConfig(TrainConfig):
    baseline_momentum: float = opt(0.9, "Running-mean baseline: b <- m * b + (1 - m) * mean reward.")


class ReinforceAgent(Agent):
    """loss = -(r - b) * log pi(answer), b a running mean of past rewards (not of this group)."""

    config_class = ReinforceConfig  # what `perception-r1 train --agent file.py:ReinforceAgent` builds

    def __init__(self, policy, config: ReinforceConfig):
        super().__init__(policy, config)
        self.baseline = 0.0

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:  # [B, G] -> [B, G]
        advantages = rewards - self.baseline
        m = self.config.baseline_momentum
        self.baseline = m * self.baseline + (1 - m) * float(rewards.mean())
        return advantages

    def loss(self, logp, advantages, mask, old_logp, ref_logp):  # logp, mask [n, T], advantages [n]
        loss = -(advantages.unsqueeze(1) * logp * mask).sum(dim=1).mean()  # -A * log pi(answer)
        return loss, {"loss": float(loss.detach()), "baseline": self.baseline}

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
    out = Path(args.out or tempfile.mkdtemp(prefix="reinforce-"))
    model = build_tiny_model(out / "tiny-model", arch="qwen2-vl", preset="tiny", seed=0)
    run = {"total_steps": args.steps, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 4}
    options = {"learning_rate": 1e-3, "log_samples_every": 0, "save_every": 1000, "model": str(model)}
    config = ReinforceConfig(**run, **options, env_kwargs={"difficulty": "easy", "answer_format": "number"})
    env = AnswerLengthBonus(gym.make(config.env_id, **config.env_kwargs))
    # the run as `perception-r1 train --agent examples/custom_agent.py:ReinforceAgent` builds it
    run = build_run(config, agent=ReinforceAgent, env=env, run_dir=out / "run", progress=False, threads=1)
    for step, row in enumerate(run.trainer.train(), 1):
        print(
            f"step {step}: reward {row['reward/mean']:.3f} baseline {row['train/baseline']:.3f}"
            f" loss {row['train/loss']:.3f}"
        )
    print(f"checkpoint with the baseline in it: {out / 'run' / 'checkpoints'}")


if __name__ == "__main__":
    main()
