"""The main job: offline GRPO that visibly improves a tiny Qwen2-VL's perception on a laptop CPU.

1. build a randomly initialised tiny Qwen2-VL (real architecture, local tokenizer);
2. a short, deliberately imperfect supervised warm start on the env's oracle answers
   (from random initialisation GRPO collapses: docs/learning-on-a-cpu.md);
3. greedy accuracy on held-out images (the test split);
4. GRPO on the training split;
5. held-out accuracy again: before -> after, per class, and where the TensorBoard run is.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

import perception_env  # noqa: F401  (registers the envs)
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.sft import supervised_warm_start
from agents.trainer import Trainer, evaluate


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo sets, per task (measured choices: see benchmarks/learning.py)."""

    env_id: str
    env_kwargs: dict
    sft_target: float  # stop the warm start once validation accuracy reaches this (imperfect on purpose)
    sft_max_steps: int
    sft_batch_size: int
    sft_learning_rate: float
    grpo_steps: int
    grpo_learning_rate: float
    grpo_lr_scheduler: str = "cosine"  # decays to 0: a constant 3e-4 wobbles once the task is solved
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 4
    eval_samples: int = 200
    sft_chunk: int = 100  # warm-start steps between validation checks
    sft_check_samples: int = 100

    def grpo_config(self, model: str, out_dir: Path, seed: int, steps: int | None = None) -> GRPOConfig:
        return GRPOConfig(
            env_id=self.env_id, env_kwargs=self.env_kwargs, model=model, output_dir=str(out_dir),
            run_name=f"grpo-seed{seed}", seed=seed, total_steps=steps or self.grpo_steps,
            prompts_per_step=self.prompts_per_step, group_size=self.group_size,
            temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=self.max_new_tokens,
            learning_rate=self.grpo_learning_rate, lr_scheduler=self.grpo_lr_scheduler, beta=0.0, max_grad_norm=1.0,
            save_every=max(1, (steps or self.grpo_steps) // 4), log_samples_every=50,
        )


RECIPES = {
    # "How many objects are in the image?" on a 4x4 grid, one object per vision token: a 0.26M model
    # learns it in a minute of supervision (shape-specific counting takes it thousands of steps), so a
    # warm start stopped at 40% leaves GRPO a policy that can perceive but answers badly.
    "counting": DemoRecipe(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs={"difficulty": {"base": "easy", "count_query": "all"}, "answer_format": "number"},
        sft_target=0.4, sft_max_steps=3000, sft_batch_size=16, sft_learning_rate=1e-3, sft_chunk=25,
        grpo_steps=600, grpo_learning_rate=3e-4,
    ),
    # One object per image, named by colour and shape. 600 supervised steps teach the answer format
    # (ref + box tokens); where the box goes is the hard part at this size: positions reach the tiny
    # model only through rotary attention, and turning them into digits is not learnt in minutes
    # (benchmarks/RESULTS.md). The curve is recorded as the honest baseline for larger models.
    "grounding": DemoRecipe(
        env_id="PerceptionR1/Grounding-v0",
        env_kwargs={"difficulty": {"base": "easy", "num_objects": [1, 1]}},
        sft_target=1.01, sft_max_steps=600, sft_batch_size=16, sft_learning_rate=1e-3, sft_chunk=300,
        grpo_steps=300, grpo_learning_rate=3e-4, max_new_tokens=32,  # the longest oracle answer: 30 tokens
    ),
}


def per_class_accuracy(infos: list[dict], key) -> dict:
    """Success rate by a key of the target (e.g. the true count), for the before/after table."""
    total, hit = Counter(), Counter()
    for info in infos:
        k = key(info)
        total[k] += 1
        hit[k] += bool(info.get("is_success"))
    return {k: (hit[k], total[k]) for k in sorted(total)}


def _class_of(task: str):
    if task == "counting":
        return lambda info: len(info["target"]["points"])
    return lambda info: info["target"]["query"].split()[-1] if info["target"]["query"] else "-"


def warm_start_to_target(agent: GRPOAgent, recipe: DemoRecipe, train_env: gym.Env, val_env: gym.Env,
                         seed: int) -> int:
    """Supervised steps in chunks until greedy validation accuracy reaches ``recipe.sft_target``.

    A tiny model sits at chance for a seed-dependent number of steps, then
    learns fast; stopping at a fixed accuracy (not a fixed step count) gives
    every seed the same imperfect starting point for RL. Returns the steps taken.
    """
    steps = 0
    params = [p for p in agent.policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.sft_learning_rate)
    while steps < recipe.sft_max_steps:
        supervised_warm_start(agent.policy, train_env, steps=recipe.sft_chunk, batch_size=recipe.sft_batch_size,
                              learning_rate=recipe.sft_learning_rate, seed=seed, optimizer=optimizer,
                              start_step=steps)
        steps += recipe.sft_chunk
        accuracy = evaluate(agent, val_env, recipe.sft_check_samples, max_new_tokens=recipe.max_new_tokens)["success"]
        print(f"      step {steps:5d}: validation accuracy {accuracy:.0%}", flush=True)
        if accuracy >= recipe.sft_target:
            break
    return steps


def run_demo(out_dir: str | Path = "runs/demo", seed: int = 0, grpo_steps: int | None = None,
             task: str = "counting", progress: bool = True, eval_every: int = 0,
             recipe: DemoRecipe | None = None) -> dict:
    """Run the whole demo; returns the before/after figures (and the held-out curve if ``eval_every``)."""
    recipe = recipe or RECIPES[task]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t_start = time.perf_counter()
    print(f"[1/5] building a tiny {recipe.env_id.split('/')[-1]} policy (random Qwen2-VL, local tokenizer)", flush=True)
    model_dir = build_tiny_model(out / f"tiny-model-seed{seed}", arch="qwen2-vl", preset="tiny", seed=seed)
    policy = QwenVLPolicy.from_pretrained(str(model_dir))
    print(f"      {policy.num_parameters():,} parameters in {model_dir}", flush=True)

    train_env = gym.make(recipe.env_id, **recipe.env_kwargs, split="train")
    test_env = gym.make(recipe.env_id, **recipe.env_kwargs, split="test")

    val_env = gym.make(recipe.env_id, **recipe.env_kwargs, split="val")
    print(f"[2/5] supervised warm start on oracle answers until {recipe.sft_target:.0%} validation accuracy"
          " (imperfect on purpose)", flush=True)
    agent = GRPOAgent(policy, recipe.grpo_config(str(model_dir), out, seed, grpo_steps))
    sft_steps = warm_start_to_target(agent, recipe, train_env, val_env, seed)
    warm_dir = policy.save_pretrained(out / f"warm-start-seed{seed}")

    config = recipe.grpo_config(str(warm_dir), out, seed, grpo_steps)
    config.eval_every, config.eval_samples = eval_every, recipe.eval_samples
    agent = GRPOAgent(policy, config)
    print(f"[3/5] held-out greedy accuracy before RL ({recipe.eval_samples} test images)", flush=True)
    before = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)

    print(f"[4/5] GRPO: {config.total_steps} steps x {config.prompts_per_step} images x G={config.group_size}", flush=True)
    trainer = Trainer(agent, config, out / config.run_name, env=train_env, eval_env=test_env, progress=progress)
    history = trainer.train()

    print("[5/5] held-out greedy accuracy after RL", flush=True)
    after = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)

    key = _class_of(task)
    by_before, by_after = per_class_accuracy(before["infos"], key), per_class_accuracy(after["infos"], key)
    print(f"\n{recipe.env_id} {recipe.env_kwargs}, seed {seed}")
    print(f"  held-out accuracy : {before['success']:6.1%} -> {after['success']:6.1%}"
          f"   ({100 * (after['success'] - before['success']):+.1f} points)")
    print(f"  held-out reward   : {before['reward']:6.3f} -> {after['reward']:6.3f}")
    label = "true count" if task == "counting" else "class"
    for k in by_after:
        hb, nb = by_before.get(k, (0, 0))
        ha, na = by_after[k]
        print(f"    {label} {k!s:>8}: {hb:3d}/{nb:<3d} -> {ha:3d}/{na:<3d}")
    if history:
        print(f"  fraction of groups with zero reward variance: first step {history[0]['train/frac_reward_zero_std']:.2f},"
              f" last step {history[-1]['train/frac_reward_zero_std']:.2f}")
    print(f"  total time {time.perf_counter() - t_start:.0f} s")
    print(f"  TensorBoard: tensorboard --logdir {out / config.run_name}")
    curve = [(0, before["success"])] + [(i + 1, row["eval/success"]) for i, row in enumerate(history)
                                        if "eval/success" in row]
    reward_curve = [(0, before["reward"])] + [(i + 1, row["eval/reward"]) for i, row in enumerate(history)
                                              if "eval/reward" in row]
    return {"before": before["success"], "after": after["success"], "curve": curve, "sft_steps": sft_steps,
            "reward_curve": reward_curve,
            "reward_before": before["reward"], "reward_after": after["reward"], "history": history}
