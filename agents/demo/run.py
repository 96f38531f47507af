"""The demo's run: a tiny Qwen2-VL, a supervised warm start stopped in a validation band, the held-out
metric, GRPO, the metric again (:func:`run_demo`); and the SFT control from the same warm start."""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import torch

from agents.build import build_run
from agents.demo.recipes import RECIPES, DemoRecipe
from agents.demo.report import CLASS_KEYS, metric_value, per_sample_metric, summarise
from agents.evaluate import read_run, write_training_evaluation
from agents.grpo.advantages import zero_std_fraction
from agents.grpo.agent import GRPOAgent
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.sft import supervised_warm_start
from agents.trainer import Trainer, evaluate
from perception_env.data.synthetic.base import distinct_scenes, scene_keys
from perception_env.evaluation.report import write_views

# ----------------------------------------------------------------------------------------------------
# Timing


class TrainingClock:
    """CPU (process) and wall seconds of training, with evaluation and checkpoint writing left out."""

    def __init__(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        self.paused_cpu = self.paused_wall = 0.0

    def elapsed(self) -> tuple[float, float]:
        return (
            time.process_time() - self.cpu0 - self.paused_cpu,
            time.perf_counter() - self.wall0 - self.paused_wall,
        )

    @contextmanager
    def paused(self):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.paused_cpu += time.process_time() - cpu
            self.paused_wall += time.perf_counter() - wall


class DemoTrainer(Trainer):
    """The Trainer, recording each step's rewards ``[B*G]`` and training time at every evaluation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = TrainingClock()
        self.step_rewards: list[list[float]] = []
        self.zero_std: list[float] = []

    def train(self, stop_at: int | None = None) -> list[dict[str, float]]:
        self.clock = TrainingClock()  # from here: the evaluation before RL, after the set-up, is not training
        return super().train(stop_at)

    def collect(self, step: int):
        batch = super().collect(step)
        self.step_rewards.append(batch.rewards.flatten().tolist())
        self.zero_std.append(zero_std_fraction(batch.rewards))
        return batch

    def _evaluate(self) -> dict[str, float]:
        cpu, wall = self.clock.elapsed()
        with self.clock.paused():
            out = super()._evaluate()
        return {**out, "time/train_cpu_s": cpu, "time/train_wall_s": wall}

    def save_checkpoint(self) -> Path:
        with self.clock.paused():
            return super().save_checkpoint()


# ----------------------------------------------------------------------------------------------------
# Warm start and control


@dataclass
class WarmStart:
    """The supervised phase's end: its steps, optimiser, validation curve, and a copy of both states."""

    steps: int
    optimizer: torch.optim.Optimizer
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, validation metric)
    cpu_s: float = 0.0
    model_state: dict | None = None
    optimizer_state: dict | None = None


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, snapshot: tuple[dict, dict]) -> None:
    model.load_state_dict(snapshot[0])
    optimizer.load_state_dict(copy.deepcopy(snapshot[1]))


def warm_start_to_band(
    agent: GRPOAgent,
    recipe: DemoRecipe,
    train_env: gym.Env,
    val_env: gym.Env,
    seed: int,
    progress: bool = True,
) -> WarmStart:
    """Supervised steps until the greedy validation metric lies in ``recipe.sft_band``.

    A tiny model sits near chance for a seed-dependent number of steps, then learns in a sharp jump;
    stopping on the metric (not a step count) gives every seed a comparable imperfect start. A chunk
    that jumps past the band is replayed from its start in halves (the data order and the optimiser
    are restored, so the replay is the same run checked more often), down to single steps.
    """
    policy = agent.policy
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.sft_learning_rate)
    warm = WarmStart(0, optimizer)
    cpu0 = time.process_time()
    chunk = recipe.sft_chunk
    while warm.steps < recipe.sft_max_steps:
        n = min(chunk, recipe.sft_max_steps - warm.steps)
        before_chunk = _snapshot(policy.model, optimizer)
        supervised_warm_start(
            policy,
            train_env,
            steps=n,
            batch_size=recipe.sft_batch_size,
            learning_rate=recipe.sft_learning_rate,
            seed=seed,
            optimizer=optimizer,
            start_step=warm.steps,
            target_order=recipe.target_order,
        )
        value = metric_value(
            evaluate(agent, val_env, recipe.sft_check_samples, max_new_tokens=recipe.max_new_tokens), recipe
        )
        where = recipe.band_position(value)
        if where > 0 and n > 1:
            _restore(policy.model, optimizer, before_chunk)
            chunk = n // 2
            continue
        warm.steps += n
        warm.curve.append((warm.steps, value))
        if progress:
            print(f"      step {warm.steps:5d}: validation {recipe.metric_label} {value:.0%}", flush=True)
        if where >= 0:
            break
    warm.cpu_s = time.process_time() - cpu0
    warm.model_state, warm.optimizer_state = _snapshot(policy.model, optimizer)
    return warm


def sft_control(
    agent: GRPOAgent,
    recipe: DemoRecipe,
    warm: WarmStart,
    train_env: gym.Env,
    test_env: gym.Env,
    seed: int,
    steps: int,
    eval_every: int = 0,
) -> dict:
    """More SFT from the same warm start instead of GRPO: ``steps`` supervised steps (same data order,
    optimiser state and rate as the warm start, then a cosine decay to 0 as GRPO's), held-out metric
    every ``eval_every`` steps. Returns the curve ``[(step, cpu_s, wall_s, metric)]`` and the times."""
    policy = agent.policy
    _restore(policy.model, warm.optimizer, (warm.model_state, warm.optimizer_state))
    clock = TrainingClock()
    curve = [(0, 0.0, 0.0, None)]
    for step in range(steps):
        for group in warm.optimizer.param_groups:  # cosine from the warm start's rate to 0
            group["lr"] = recipe.sft_learning_rate * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        supervised_warm_start(
            policy,
            train_env,
            steps=1,
            batch_size=recipe.sft_batch_size,
            learning_rate=recipe.sft_learning_rate,
            seed=seed,
            optimizer=warm.optimizer,
            start_step=warm.steps + step,
            target_order=recipe.target_order,
        )
        if (eval_every and (step + 1) % eval_every == 0) or step + 1 == steps:
            cpu, wall = clock.elapsed()
            with clock.paused():
                last = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
                value = metric_value(last, recipe)
            curve.append((step + 1, cpu, wall, value))
    cpu, wall = clock.elapsed()
    return {
        "steps": steps,
        "curve": curve,
        "after": curve[-1][3],
        "cpu_s": cpu,
        "wall_s": wall,
        "per_sample_after": per_sample_metric(last, test_env, recipe),
    }


# ----------------------------------------------------------------------------------------------------
# The demo


def run_demo(
    out_dir: str | Path = "runs/demo",
    seed: int = 0,
    grpo_steps: int | None = None,
    task: str = "counting",
    progress: bool = True,
    eval_every: int = 0,
    recipe: DemoRecipe | None = None,
    control: bool = False,
    control_eval_every: int = 0,
) -> dict:
    """Run the whole demo; returns the before/after figures, the held-out curve (every ``eval_every``
    GRPO steps), the reward diagnostics and, with ``control``, the SFT control from the same warm start."""
    recipe = recipe or RECIPES[task]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    name = recipe.env_id.split("/")[-1]
    print(f"[1/5] building a tiny {name} policy (random Qwen2-VL, local tokenizer)", flush=True)
    model_dir = build_tiny_model(
        out / f"tiny-model-seed{seed}",
        arch="qwen2-vl",
        preset=recipe.preset,
        seed=seed,
        rope_theta=recipe.rope_theta,
        image_mean=recipe.image_mean,
        image_std=recipe.image_std,
    )
    policy = QwenVLPolicy.from_pretrained(str(model_dir))
    print(f"      {policy.num_parameters():,} parameters in {model_dir}", flush=True)

    train_env, val_env, test_env = (recipe.make_env(split) for split in ("train", "val", "test"))
    demo_env = recipe.make_env("train", recipe.sft_demonstrations) if recipe.sft_demonstrations else train_env
    task = train_env.unwrapped.task
    # what the figures rest on: the splits are disjoint by content, so a split holds fewer distinct
    # scenes than images (the rest repeat a scene with other pixel noise)
    scenes = {
        "val": distinct_scenes(val_env.unwrapped.dataset, recipe.sft_check_samples),
        "test": distinct_scenes(test_env.unwrapped.dataset, recipe.eval_samples),
    }
    lo, hi = recipe.sft_band
    print(
        f"[2/5] supervised warm start on oracle answers until validation {recipe.metric_label} is in "
        f"{lo:.0%}..{hi:.0%} (imperfect on purpose; {recipe.sft_check_samples} validation images, "
        f"{scenes['val']} distinct scenes)",
        flush=True,
    )
    # what answers the validation images (evaluate() asks an agent); GRPO's run is built after the warm start
    evaluator = GRPOAgent(policy, recipe.grpo_config(str(model_dir), out, seed, grpo_steps))
    warm = warm_start_to_band(evaluator, recipe, demo_env, val_env, seed)
    warm_dir = policy.save_pretrained(out / f"warm-start-seed{seed}")

    config = recipe.grpo_config(str(warm_dir), out, seed, grpo_steps)
    config.eval_every, config.eval_samples = eval_every, recipe.eval_samples
    # the run `perception-r1 train` would build from these options, on the warm-started policy (a KL
    # reference copies it); torch's threads stay as the caller set them
    run = build_run(
        config,
        policy=policy,
        env=train_env,
        eval_env=test_env,
        progress=progress,
        threads=torch.get_num_threads(),
        trainer_class=DemoTrainer,
    )
    agent, trainer, config = run.agent, run.trainer, run.trainer.config
    print(
        f"[3/5] held-out {recipe.metric_label} before RL ({recipe.eval_samples} test images, "
        f"{scenes['test']} distinct scenes, greedy)",
        flush=True,
    )
    before = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
    write_training_evaluation(out / "eval-before", test_env, before, "warm start")

    print(
        f"[4/5] GRPO: {config.total_steps} steps x {config.prompts_per_step} images x G={config.group_size}"
        + (f", KL to the warm start beta={config.beta}" if config.beta else ""),
        flush=True,
    )
    history = trainer.train()
    grpo_cpu, grpo_wall = trainer.clock.elapsed()

    print(f"[5/5] held-out {recipe.metric_label} after RL", flush=True)
    after = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
    write_training_evaluation(out / "eval-after", test_env, after, f"after {config.total_steps} GRPO steps")
    compared = write_views(
        out,
        *read_run(out / "eval-before"),
        test_env,
        compare=read_run(out / "eval-after"),
        report_name="before-vs-after.html",
    )["report"]
    result = summarise(recipe, task, seed, before, after, history, trainer, warm)
    result.update(grpo_cpu_s=grpo_cpu, grpo_wall_s=grpo_wall, run_dir=str(run.run_dir))
    # per test image: its scene and the metric before and after, for intervals over scenes and seeds
    result.update(
        eval_samples=before["n"],
        val_samples=min(recipe.sft_check_samples, len(val_env.unwrapped.dataset)),
        distinct_scenes=scenes,
        per_sample={
            "scene": scene_keys(test_env.unwrapped.dataset, before["n"]),
            # the image's class (CLASS_KEYS: true count, shape ...): the strata scenes are drawn within
            "stratum": [CLASS_KEYS.get(task, ("", lambda info: "-"))[1](info) for info in before["infos"]],
            "before": per_sample_metric(before, test_env, recipe),
            "after": per_sample_metric(after, test_env, recipe),
        },
    )
    print(
        f"  GRPO took {grpo_cpu:.0f} s of CPU ({grpo_wall:.0f} s wall); the whole demo "
        f"{time.process_time() - cpu_start:.0f} s of CPU, {time.perf_counter() - t_start:.0f} s wall"
    )
    print(f"  TensorBoard: tensorboard --logdir {run.run_dir}")
    print(f"  every test image, before and after RL, in a browser: {compared}")
    if control:
        steps = recipe.control_sft_steps or grpo_steps or recipe.grpo_steps
        print(f"[control] {steps} more supervised steps from the same warm start instead of GRPO", flush=True)
        c = result["control"] = sft_control(
            agent, recipe, warm, demo_env, test_env, seed, steps, control_eval_every
        )
        c["gain"] = recipe.gain(result["before"], c["after"])
        print(
            f"  SFT control: {recipe.metric_label} {result['before']:6.1%} -> {c['after']:6.1%} "
            f"({recipe.gain(result['before'], c['after']):+.1f} points) in {c['cpu_s']:.0f} s of CPU "
            f"({c['wall_s']:.0f} s wall); GRPO: {result['after']:6.1%} in {grpo_cpu:.0f} s of CPU",
            flush=True,
        )
    return result
