"""A tour of the environments: every env, an oracle and a random agent, rewards printed, renders saved.

python -m perception_env.tour --out runs/tour
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

import perception_env


def tour(
    out_dir: str | Path = "runs/tour", episodes: int = 3, seed: int = 0, difficulty: str = "easy"
) -> dict:
    """Play every registered env with the oracle and a random agent; return mean rewards per env."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for env_id in perception_env.ENV_IDS:
        env = gym.make(env_id, difficulty=difficulty, render_mode="rgb_array")
        env.action_space.seed(seed)
        oracle, random_ = [], []
        for episode in range(episodes):
            obs, info = env.reset(seed=seed + episode)
            answer = env.unwrapped.oracle_answer()
            _, reward, _, _, step_info = env.step(answer)
            oracle.append(reward)
            if episode == 0:
                name = env_id.split("/")[-1]
                Image.fromarray(env.render()).save(out / f"{name}-oracle.png")
                print(
                    f"\n{env_id}  ({info['answer_format']} answers, frame {info['frame'] and info['frame']['name']})"
                )
                print(f"  prompt : {obs['prompt']}")
                print(f"  oracle : {answer[:100]}")
            obs, info = env.reset(seed=seed + episode)
            answer = env.action_space.sample()
            _, reward, _, _, step_info = env.step(answer)
            random_.append(reward)
            if episode == 0:
                Image.fromarray(env.render()).save(out / f"{name}-random.png")
                print(f"  random : {answer[:60]!r} -> {reward:.3f} ({step_info.get('reason')})")
        summary[env_id] = {"oracle": float(np.mean(oracle)), "random": float(np.mean(random_))}
        print(
            f"  mean reward over {episodes}: oracle {summary[env_id]['oracle']:.3f}, random {summary[env_id]['random']:.3f}"
        )
        env.close()
    print(f"\nrendered images in {out}/")
    return summary


def main(argv: list[str] | None = None) -> None:
    """``python -m perception_env.tour``: :func:`tour` with its options from the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/tour", help="folder for the rendered PNGs")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", default="easy")
    args = parser.parse_args(argv)
    tour(args.out, args.episodes, args.seed, args.difficulty)


if __name__ == "__main__":
    main()
