"""Reshape the reward with a gym.Wrapper and train on it: here, a bonus for a well-formed answer.

    python examples/custom_reward_wrapper.py --steps 4

The env reports why it scored an answer in ``info["reward_components"]`` (``format`` is 1.0 when the
answer parsed). A wrapper can read that and add to the reward; with a wrapper the Trainer scores each
answer as an episode of its own through the whole stack (``reset`` to the sample, then ``step``), so any
wrapper plugs in unchanged. ``info["base_reward"]`` keeps the task's own score for logging. The model is a tiny Qwen2-VL built offline and given a short supervised warm start on
the env's oracle answers (a random one never writes a parsable answer, so there would be no signal).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
import torch

import perception_env  # noqa: F401  (registers the envs)
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.sft import supervised_warm_start
from agents.trainer import Trainer


class FormatBonus(gym.Wrapper):
    """``reward + bonus`` when the answer parsed (``info["reward_components"]["format"] == 1``)."""

    def __init__(self, env: gym.Env, bonus: float = 0.5):
        super().__init__(env)
        self.bonus = bonus

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        well_formed = float((info.get("reward_components") or {}).get("format", 0.0))
        info = {**info, "base_reward": reward, "format_bonus": self.bonus * well_formed}
        return observation, reward + self.bonus * well_formed, terminated, truncated, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="GRPO steps")
    parser.add_argument("--bonus", type=float, default=0.5)
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--sft-steps", type=int, default=30, help="supervised warm-start steps")
    parser.add_argument("--quick", action="store_true", help="2 GRPO steps after 15 warm-start steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="format-bonus-"))

    # 1. the wrapper on its own: a parsable and an unparsable answer
    env_kwargs = {"difficulty": "easy", "answer_format": "number"}
    env = FormatBonus(gym.make("PerceptionR1/Counting-v0", **env_kwargs), args.bonus)
    for answer in ["7", "no idea"]:
        env.reset(options={"index": 0})  # one answer per episode: the same image again
        _, reward, _, _, info = env.step(answer)
        print(
            f"answer {answer!r:10} task reward {info['base_reward']:.3f} + bonus {info['format_bonus']:.2f}"
            f" = {reward:.3f}"
        )

    # 2. the same wrapper under the Trainer
    model = build_tiny_model(out / "tiny-model", arch="qwen2-vl", preset="tiny", seed=0)
    policy = QwenVLPolicy.from_pretrained(str(model))
    supervised_warm_start(policy, env, steps=15 if args.quick else args.sft_steps, learning_rate=3e-3)
    config = GRPOConfig(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs=env_kwargs,
        model=str(model),
        output_dir=str(out),
        run_name="run",
        total_steps=2 if args.quick else args.steps,
        prompts_per_step=4,
        group_size=4,
        max_new_tokens=4,
        learning_rate=3e-4,
        beta=0.0,
        log_samples_every=0,
        save_every=1000,
    )
    trainer = Trainer(GRPOAgent(policy, config), config, out / "run", env=env, progress=False)
    for step, row in enumerate(trainer.train(), 1):
        # reward/format: the env's own component, logged by the Trainer = the fraction that parsed
        print(
            f"step {step}: reward/mean {row['reward/mean']:.3f} (with bonus),"
            f" parsed {row['reward/format']:.2f},"
            f" reward/std {row['reward/std']:.3f}, grad norm {row['train/grad_norm']:.3f}"
        )
    print(f"TensorBoard: tensorboard --logdir {out / 'run'}")


if __name__ == "__main__":
    main()
