"""A random agent on every environment: the floor any learned policy must beat.

    python examples/random_agent.py --episodes 20

Each env's action space is a text space; ``action_space.sample()`` draws a random string, which the
env parses (it never raises) and scores. Expect rewards near 0 and a ``reason`` saying why.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import perception_env  # registers PerceptionR1/* envs
from perception_env.data import PRESETS as DIFFICULTIES  # easy, medium, hard


def run(episodes: int, seed: int, difficulty: str) -> dict[str, float]:
    means = {}
    for env_id in perception_env.ENV_IDS:
        env = gym.make(env_id, difficulty=difficulty)
        env.action_space.seed(seed)
        rewards = []
        for episode in range(episodes):
            observation, info = env.reset(seed=seed + episode)
            answer = env.action_space.sample()
            _, reward, terminated, truncated, step_info = env.step(answer)
            assert terminated and not truncated  # one question, one answer, episode over
            rewards.append(reward)
            if episode == 0:
                print(f"{env_id}: prompt {observation['prompt'][:60]!r}...")
                print(f"  random answer {answer[:40]!r} -> reward {reward:.3f} ({step_info['reason'][:70]})")
        means[env_id] = float(np.mean(rewards))
        print(f"  mean reward over {episodes} episodes: {means[env_id]:.3f} (max {step_info['max_reward']})")
        env.close()
    return means


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=20, help="episodes per env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", default="easy", choices=list(DIFFICULTIES))
    parser.add_argument("--quick", action="store_true", help="2 episodes per env")
    args = parser.parse_args(argv)
    run(2 if args.quick else args.episodes, args.seed, args.difficulty)


if __name__ == "__main__":
    main()
