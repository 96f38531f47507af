"""The main job: offline GRPO that visibly improves a tiny Qwen2-VL's perception on a laptop CPU.

1. build a randomly initialised tiny Qwen2-VL (real architecture, local tokenizer);
2. a supervised warm start on the env's oracle answers, stopped once the held-out metric on the
   validation split enters a band below the ceiling (from random initialisation GRPO collapses:
   docs/learning-on-a-cpu.md);
3. the task's paper metric, greedy, on held-out images (the test split);
4. GRPO on the training split;
5. the metric again: before -> after, per class, what RL's groups looked like, where the TensorBoard run is.

``run_demo(..., control=True)`` then restores the warm start and spends about GRPO's compute on more
supervised steps instead: the control that says whether RL did better than more SFT
(benchmarks/learning.py prints both).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import perception_env  # noqa: F401  (registers the envs)
from agents.evaluate import read_run, write_training_evaluation
from agents.grpo.advantages import zero_std_fraction
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.sft import supervised_warm_start
from agents.trainer import Trainer, evaluate
from perception_env.data.synthetic.base import distinct_scenes, scene_keys
from perception_env.evaluation.report import write_views
from perception_env.evaluation.runner import metrics_dataset
from perception_env.evaluation.tasks import task_metrics


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo sets, per task (measured choices: benchmarks/RESULTS.md)."""

    env_id: str
    env_kwargs: dict
    metric: str  # the paper's held-out metric: a key of evaluate()["metrics"] (a fraction)
    metric_label: str  # as printed
    sft_band: tuple[float, float]  # stop the warm start once the validation metric lies in [lo, hi]
    sft_max_steps: int
    grpo_steps: int
    grpo_learning_rate: float
    higher_is_better: bool = True  # False for OCR's edit distance
    preset: str = "tiny"  # agents/policies/tiny_model.py PRESETS
    rope_theta: float | None = None  # the text model's rotary base; None: the preset's
    # the processor's pixel normalisation (one value for the 3 channels); None: the released CLIP values
    image_mean: float | None = None
    image_std: float | None = None
    sft_batch_size: int = 16
    sft_learning_rate: float = 1e-3
    sft_chunk: int = 25  # warm-start steps between validation checks (halved to land inside the band)
    sft_check_samples: int = 100
    grpo_lr_scheduler: str = "cosine"  # decays to 0: a constant rate wobbles once the task is solved
    grpo_beta: float = 0.0  # KL to the warm start (the paper: 0.04); 0 skips the reference model
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 4
    eval_samples: int = 200
    # the SFT control's steps: about the CPU time of the GRPO phase (both times are printed beside it)
    control_sft_steps: int = 0
    # supervised phases (warm start, control) see only the first N training images (0: all of them);
    # GRPO always samples the whole training split
    sft_demonstrations: int = 0
    # the order supervised answers list an image's objects (agents/sft.py): "random" per image, as real
    # annotation files; "sorted" (reading order) for the comparison with one fixed order
    target_order: str = "random"

    def make_env(self, split: str, size: int = 0) -> gym.Env:
        """The recipe's env on ``split``; ``size`` > 0 keeps the split's first ``size`` samples."""
        kwargs = dict(self.env_kwargs)
        if size:
            kwargs["data_kwargs"] = {**kwargs.get("data_kwargs", {}), "size": size}
        return gym.make(self.env_id, **kwargs, split=split)

    def grpo_config(self, model: str, out_dir: Path, seed: int, steps: int | None = None) -> GRPOConfig:
        total = steps or self.grpo_steps
        return GRPOConfig(
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            model=model,
            output_dir=str(out_dir),
            run_name=f"grpo-seed{seed}",
            seed=seed,
            total_steps=total,
            prompts_per_step=self.prompts_per_step,
            group_size=self.group_size,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=self.max_new_tokens,
            learning_rate=self.grpo_learning_rate,
            lr_scheduler=self.grpo_lr_scheduler,
            beta=self.grpo_beta,
            max_grad_norm=1.0,
            save_every=max(1, total // 4),
            log_samples_every=50,
        )

    def gain(self, before: float, after: float) -> float:
        """Improvement in points (x100), positive when the metric got better whatever its direction."""
        return 100.0 * (after - before) * (1 if self.higher_is_better else -1)

    def band_position(self, value: float) -> int:
        """-1 short of the band, 0 inside it, +1 past it (in the direction the metric improves)."""
        lo, hi = self.sft_band
        if lo <= value <= hi:
            return 0
        short = value < lo if self.higher_is_better else value > hi
        return -1 if short else 1


RECIPES = {
    # "How many objects are in the image?" on a 4x4 grid, one object per vision token: a 0.26M model
    # learns it in a minute of supervision (shape-specific counting takes it thousands of steps), so a
    # warm start stopped at ~40% leaves GRPO a policy that can perceive but answers badly. Counting every
    # object needs no position: with the released rope_theta the image tokens are a bag, and GRPO takes
    # seed 0 from 41% to 100%; with the tiny preset's theta 10 it stalled (38.5% -> 40.5%, docs/learning-on-a-cpu.md).
    "counting": DemoRecipe(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs={"difficulty": {"base": "easy", "count_query": "all"}, "answer_format": "number"},
        metric="accuracy",
        metric_label="accuracy",
        sft_band=(0.35, 0.6),
        sft_max_steps=3000,
        grpo_steps=600,
        grpo_learning_rate=3e-4,
        rope_theta=1_000_000.0,
        control_sft_steps=700,
    ),
    # One object per image ("the red circle"), centred in one of 16 grid cells; answer in Qwen2-VL box
    # tokens. Positions reach the language model through M-RoPE: the tiny preset's rope_theta (10) keeps
    # the image rows and columns apart. IoU^2 plus a format term keeps the answer's shape while RL moves
    # the box; Acc@0.5 as RefCOCO.
    "grounding": DemoRecipe(
        env_id="PerceptionR1/Grounding-v0",
        env_kwargs={
            "difficulty": {"base": "easy", "num_objects": [1, 1]},
            "reward_config": {"power": 2.0, "format_weight": 0.2},
        },
        metric="acc@0.5",
        metric_label="Acc@0.5",
        sft_band=(0.4, 0.7),
        sft_max_steps=3000,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=32,  # the longest oracle answer: 26 tokens
        control_sft_steps=1000,
    ),
    # The simplest detection: one circle per image, in one of 16 grid cells, named and boxed; the paper's
    # DETR-style reward (format + F1@0.5 + label accuracy + IoU over Hungarian matches) and COCO AP
    # (pycocotools, every box scored 1.0, as the paper evaluates). With 1-2 objects of 3 shapes the tiny
    # model localises one object but not two and confuses shapes: GRPO then gains +7 to +17 AP
    # (docs/learning-on-a-cpu.md).
    "detection": DemoRecipe(
        env_id="PerceptionR1/Detection-v0",
        env_kwargs={
            "difficulty": {"base": "easy", "num_objects": [1, 1], "shapes": ["circle"]},
            "answer_format": "qwen2-vl",
        },
        metric="AP",
        metric_label="COCO AP",
        sft_band=(0.2, 0.5),
        sft_max_steps=4000,
        sft_chunk=50,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=26,  # one object: 23 tokens
        control_sft_steps=1000,
    ),
    # Many unordered objects (the paper's argument for matched rewards): 2-5 objects (3.5 on average) of
    # 2 classes, one per cell of the 4x4 grid, every one named and boxed; the paper's Hungarian-matched
    # reward and COCO AP. Supervision lists each image's objects in a random order, as real annotation
    # files do (target_order="sorted" for the comparison). Not yet a recipe that learns: supervised
    # probes reached <= 5% AP after 1,000 steps and no GRPO run was made (docs/learning-on-a-cpu.md).
    "detection-multi": DemoRecipe(
        env_id="PerceptionR1/Detection-v0",
        env_kwargs={
            "difficulty": {"base": "easy", "num_objects": [2, 5], "shapes": ["circle", "square"]},
            "answer_format": "qwen2-vl",
        },
        metric="AP",
        metric_label="COCO AP",
        sft_band=(0.2, 0.4),
        sft_max_steps=6000,
        sft_chunk=100,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=116,  # the longest oracle answer (five objects, labels alternating): 112 tokens
        control_sft_steps=1000,
    ),
    # PixMo-Count as the paper trains it: point to every object (2-5 per image, one per grid cell), the
    # count is the number of points; reward = count ratio x (1 - mean Hungarian-matched distance / sqrt 2),
    # metric = exact-count accuracy. Supervision lists the points in a random order per image. Warm
    # starts stop just after SFT's jump (30-45% test accuracy); GRPO: +44 to +70 points on seeds 0-2.
    "counting-points": DemoRecipe(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs={
            "difficulty": {
                "base": "easy",
                "count_query": "all",
                "num_objects": [2, 5],
                "count_range": [2, 5],
            },
            "answer_format": "qwen2-vl-points",
        },
        metric="accuracy",
        metric_label="count accuracy",
        sft_band=(0.35, 0.6),
        sft_max_steps=3000,
        sft_chunk=50,
        sft_check_samples=200,
        grpo_steps=300,
        grpo_learning_rate=3e-4,
        max_new_tokens=48,  # five points: 45 tokens
        control_sft_steps=1000,
    ),
    # A word of 1-4 letters on a 168x56 page, one letter centred in each 28-px cell (one vision token
    # each), the word starting at a random cell of a 6x2 grid; the paper's PageOCR reward, 1 - normalised
    # edit distance, and its metric. The processor normalises by the page's grey (0.92, std 0.3): with
    # CLIP's values SFT stayed at 0-1% exact words for 2,250 steps (docs/learning-on-a-cpu.md).
    # A 112-px page left 4-letter words one start column, so the test's 4-letter words were unseen.
    # Edit-distance rewards give partial credit, and GRPO at beta 0 made half the groups unanimous on
    # a wrong word; the paper's beta 0.04 and 2,000 steps keep it exploring (about 6 CPU minutes).
    "ocr": DemoRecipe(
        env_id="PerceptionR1/OCR-v0",
        env_kwargs={"difficulty": {"base": "easy", "letter_cell": 28, "page_size": [168, 56]}},
        metric="edit_distance",
        metric_label="edit distance",
        higher_is_better=False,
        sft_band=(0.35, 0.6),
        sft_max_steps=3000,
        sft_check_samples=200,
        grpo_steps=2000,
        grpo_beta=0.04,  # the paper's KL: with beta 0 seed 2 collapsed onto wrong answers (+13 to +17)
        grpo_learning_rate=3e-4,
        max_new_tokens=8,
        image_mean=0.92,
        image_std=0.3,
        control_sft_steps=3000,
    ),
}


# ----------------------------------------------------------------------------------------------------
# Reporting helpers


def per_class_accuracy(infos: list[dict], key: Callable[[dict], Any]) -> dict:
    """Success rate by a key of the target (e.g. the true count), for the before/after table."""
    total, hit = Counter(), Counter()
    for info in infos:
        k = key(info)
        total[k] += 1
        hit[k] += bool(info.get("is_success"))
    return {k: (hit[k], total[k]) for k in sorted(total)}


# task -> (column name, the target's class): what the per-class table groups by
CLASS_KEYS: dict[str, tuple[str, Callable[[dict], Any]]] = {
    "counting": ("true count", lambda info: len(info["target"]["points"])),
    # the target's shape, not the anchor's ("the red circle left of the blue square")
    "grounding": ("shape", lambda info: (info["target"]["labels"] or ["-"])[0]),
    "detection": ("objects", lambda info: len(info["target"]["boxes"])),
    "ocr": ("letters", lambda info: len(info["target"]["text"] or "")),
}


def metric_value(result: dict, recipe: DemoRecipe) -> float:
    """The recipe's metric from :func:`agents.trainer.evaluate`'s result; a metric with no value
    (COCO's -1 for an empty area range) counts as the worst score."""
    value = result["metrics"].get(recipe.metric)
    if value is None or not math.isfinite(float(value)):
        return 0.0 if recipe.higher_is_better else 1.0
    return float(value)


def per_sample_metric(result: dict, env: gym.Env, recipe: DemoRecipe) -> list[float]:
    """The recipe's metric on each evaluated sample alone, in index order (the bootstrap's input,
    benchmarks/statistics.py): a 0/1 hit for accuracy and Acc@0.5, the page's edit distance, and for
    COCO AP the AP of the image's own boxes (a per-image proxy: AP is not a mean over images)."""
    u = env.unwrapped
    dataset = metrics_dataset(env)
    return [
        metric_value(
            {"metrics": task_metrics(u.task, [record], [u.dataset[record["index"]]], dataset=dataset)}, recipe
        )
        for record in result["records"]
    ]


def reward_windows(
    step_rewards: list[list[float]], zero_std: list[float], windows: int = 10, max_reward: float | None = None
) -> list[dict]:
    """GRPO's rewards in ``windows`` runs of consecutive steps (one step each when there are fewer):
    mean, quartiles, the share of rewards at 0 and near ``max_reward``, and the mean fraction of groups
    whose G rewards were all equal (``zero_std``, one value per step)."""
    rows = []
    for steps in np.array_split(np.arange(len(step_rewards)), min(windows, len(step_rewards))):
        rewards = np.concatenate([np.asarray(step_rewards[s], dtype=np.float64) for s in steps])
        row = {
            "steps": (int(steps[0]) + 1, int(steps[-1]) + 1),
            "mean": float(rewards.mean()),
            "quartiles": [float(v) for v in np.quantile(rewards, [0.0, 0.25, 0.5, 0.75, 1.0])],
            "at_zero": float(np.mean(rewards <= 1e-9)),
            "zero_std": float(np.mean([zero_std[s] for s in steps])),
        }
        if max_reward is not None:  # within 5% of the maximum: rounded coordinates never reach IoU 1
            row["at_max"] = float(np.mean(rewards >= 0.95 * max_reward))
        rows.append(row)
    return rows


STALL_MIN_GAIN = 5.0  # held-out points below which a run counts as stalled


def stall_reason(gain: float, windows: list[dict], min_gain: float = STALL_MIN_GAIN) -> str | None:
    """Why RL looks stalled (None when it is not): little held-out gain, or most groups without signal."""
    if not windows:
        return None
    last = windows[-1]
    if gain < min_gain:
        return f"the held-out metric moved {gain:+.1f} points (< {min_gain:g})"
    if last["zero_std"] > 0.5 and last.get("at_max", 0.0) < 0.9:
        return (
            f"{last['zero_std']:.0%} of the last groups had G equal rewards (no signal), yet "
            f"{1.0 - last.get('at_max', 0.0):.0%} of the answers were short of the maximum reward"
        )
    return None


STALL_HELP = """\
  What the table means. GRPO learns only from groups whose G answers earned different rewards: an
  answer's advantage is its reward minus its group's mean, so a group of equal rewards (all 0: nothing
  hit the target; all at the maximum: nothing left to learn) pushes no weight. "zero-var" is the
  fraction of such groups. Rewards piled at 0 with zero-var near 1: the warm start is too weak for
  sampling to find a rewarded answer (warm-start longer, raise G, or use a denser reward, e.g.
  IoU instead of IoU^2). zero-var rising while the mean falls: the policy collapsed to one answer
  (lower the learning rate). Rewards at the maximum: the task is solved for the training images."""


def print_reward_table(windows: list[dict]) -> None:
    print("    steps       mean reward   quartiles (min 25% 50% 75% max)        at 0   zero-var")
    for row in windows:
        q = " ".join(f"{v:5.2f}" for v in row["quartiles"])
        steps = f"{row['steps'][0]}-{row['steps'][1]}"
        print(
            f"    {steps:<11} {row['mean']:8.3f}      {q}    {row['at_zero']:5.0%}   {row['zero_std']:6.0%}"
        )


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
    agent = GRPOAgent(policy, recipe.grpo_config(str(model_dir), out, seed, grpo_steps))
    warm = warm_start_to_band(agent, recipe, demo_env, val_env, seed)
    warm_dir = policy.save_pretrained(out / f"warm-start-seed{seed}")

    config = recipe.grpo_config(str(warm_dir), out, seed, grpo_steps)
    config.eval_every, config.eval_samples = eval_every, recipe.eval_samples
    agent = GRPOAgent(policy, config)
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
    trainer = DemoTrainer(
        agent, config, out / config.run_name, env=train_env, eval_env=test_env, progress=progress
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
    result = _summarise(recipe, task, seed, before, after, history, trainer, warm)
    result.update(grpo_cpu_s=grpo_cpu, grpo_wall_s=grpo_wall, run_dir=str(out / config.run_name))
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
    print(f"  TensorBoard: tensorboard --logdir {out / config.run_name}")
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


def _summarise(
    recipe: DemoRecipe,
    task: str,
    seed: int,
    before: dict,
    after: dict,
    history: list[dict],
    trainer: DemoTrainer,
    warm: WarmStart,
) -> dict:
    """Print before -> after, per class and the reward diagnostics; return the figures."""
    m_before, m_after = metric_value(before, recipe), metric_value(after, recipe)
    gain = recipe.gain(m_before, m_after)
    print(f"\n{recipe.env_id} {recipe.env_kwargs}, seed {seed}")
    print(
        f"  held-out {recipe.metric_label:<9s}: {m_before:6.1%} -> {m_after:6.1%}   ({gain:+.1f} points; "
        f"{before['n']} test images, {distinct_scenes(trainer.eval_env.unwrapped.dataset, before['n'])} "
        "distinct scenes)"
    )
    if recipe.metric not in ("accuracy", "acc@0.5"):  # those two are the env's success rate
        print(f"  held-out success  : {before['success']:6.1%} -> {after['success']:6.1%}")
    print(f"  held-out reward   : {before['reward']:6.3f} -> {after['reward']:6.3f}")
    label, key = CLASS_KEYS.get(task, ("class", lambda info: "-"))
    by_before, by_after = per_class_accuracy(before["infos"], key), per_class_accuracy(after["infos"], key)
    for k in by_after:
        hb, nb = by_before.get(k, (0, 0))
        ha, na = by_after[k]
        print(f"    {label} {k!s:>8}: {hb:3d}/{nb:<3d} -> {ha:3d}/{na:<3d}")
    max_reward = after["infos"][0].get("max_reward") if after["infos"] else None
    windows = reward_windows(trainer.step_rewards, trainer.zero_std, max_reward=max_reward)
    if windows:
        print(
            f"  groups with G equal rewards (no learning signal): first step {trainer.zero_std[0]:.0%},"
            f" last step {trainer.zero_std[-1]:.0%}"
        )
    stall = stall_reason(gain, windows)
    if stall:
        what = (
            "RL stalled"
            if gain < STALL_MIN_GAIN
            else f"RL gained {gain:+.1f} points but is running out of signal"
        )
        print(f"  {what}: {stall}. GRPO's rewards, step by step:")
        print_reward_table(windows)
        print(STALL_HELP)
    curve = [(0, 0.0, 0.0, m_before)] + [
        (
            i + 1,
            row["time/train_cpu_s"],
            row["time/train_wall_s"],
            metric_value({"metrics": {recipe.metric: row.get(f"eval/{recipe.metric}")}}, recipe),
        )
        for i, row in enumerate(history)
        if "time/train_cpu_s" in row
    ]
    return {
        "task": task,
        "seed": seed,
        "metric": recipe.metric,
        "metric_label": recipe.metric_label,
        "higher_is_better": recipe.higher_is_better,
        "before": m_before,
        "after": m_after,
        "gain": gain,
        "success_before": before["success"],
        "success_after": after["success"],
        "reward_before": before["reward"],
        "reward_after": after["reward"],
        "sft_steps": warm.steps,
        "warm_curve": warm.curve,
        "warm_cpu_s": warm.cpu_s,
        "curve": curve,
        "reward_windows": windows,
        "stall": stall,
        "history": history,
    }
