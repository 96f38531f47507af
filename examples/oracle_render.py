"""The oracle (the env's own perfect answer) on every environment, with the scored answer drawn as PNG.

    python examples/oracle_render.py --out runs/oracle

The oracle shows what a perfect answer looks like in each task's format, and that the reward of a
perfect answer is the task's maximum; ``render()`` draws the targets and the parsed answer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
from PIL import Image

import perception_env  # registers PerceptionR1/* envs
from perception_env.data import PRESETS as DIFFICULTIES  # easy, medium, hard


def run(out_dir: Path, episodes: int, seed: int, difficulty: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for env_id in perception_env.ENV_IDS:
        env = gym.make(env_id, difficulty=difficulty, render_mode="rgb_array")
        name = env_id.split("/")[-1]
        for episode in range(episodes):
            observation, _ = env.reset(seed=seed + episode)
            answer = env.unwrapped.oracle_answer()
            _, reward, _, _, info = env.step(answer)
            path = out_dir / f"{name}-{episode}.png"
            Image.fromarray(env.render()).save(path)  # [H, W, 3] uint8: image, targets and answer drawn
            saved.append(path)
            print(
                f"{env_id} #{episode}: {answer[:60]!r} -> reward {reward:.3f} / {info['max_reward']}"
                f" success={info['is_success']} -> {path}"
            )
        env.close()
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/oracle", help="folder for the PNGs")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", default="easy", choices=list(DIFFICULTIES))
    parser.add_argument("--quick", action="store_true", help="1 episode per env")
    args = parser.parse_args(argv)
    run(Path(args.out), 1 if args.quick else args.episodes, args.seed, args.difficulty)


if __name__ == "__main__":
    main()
