"""Does GRPO teach the tiny model? Held-out accuracy vs GRPO step, per task and seed.

    .venv/bin/python benchmarks/learning.py --tasks counting grounding --seeds 0 1 2 --eval-every 50

Each run is the demo's recipe (agents/demo.py): tiny Qwen2-VL -> short warm
start -> GRPO, with greedy held-out accuracy every ``--eval-every`` steps.
Prints the curves and the before -> after gain per seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from agents.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["counting", "grounding"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--grpo-steps", type=int, default=None, help="override the recipe's GRPO steps")
    parser.add_argument("--out", default="runs/learning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for task in args.tasks:
        for seed in args.seeds:
            t0 = time.perf_counter()
            r = run_demo(Path(args.out) / f"{task}-seed{seed}", seed=seed, grpo_steps=args.grpo_steps, task=task,
                         progress=False, eval_every=args.eval_every)
            results[f"{task}/seed{seed}"] = {"before": r["before"], "after": r["after"], "curve": r["curve"],
                                             "reward_curve": r["reward_curve"],
                                             "seconds": time.perf_counter() - t0}
    print("\nheld-out greedy accuracy (success rate) by GRPO step")
    for name, r in results.items():
        curve = "  ".join(f"{step}:{acc:.0%}" for step, acc in r["curve"])
        print(f"  {name:18s} {r['before']:5.1%} -> {r['after']:5.1%} ({100 * (r['after'] - r['before']):+5.1f} pts,"
              f" {r['seconds']:.0f} s)   {curve}")
    print("\nheld-out mean reward by GRPO step")
    for name, r in results.items():
        print(f"  {name:18s} " + "  ".join(f"{step}:{reward:.3f}" for step, reward in r["reward_curve"]))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "learning.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
