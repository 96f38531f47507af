"""The demo's figures: the recipe's metric (whole set and per image), the per-class table, GRPO's reward
windows and why a run looks stalled, and the printed summary. Torch-free: it reads what the run returns."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from agents.demo.recipes import DemoRecipe
from perception_env.data.synthetic.base import distinct_scenes
from perception_env.evaluation.runner import metrics_dataset
from perception_env.evaluation.tasks import task_metrics


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
    """Print one row per window of :func:`reward_windows`: its steps, mean reward, quartiles, share at 0 and
    share of groups with equal rewards."""
    print("    steps       mean reward   quartiles (min 25% 50% 75% max)        at 0   zero-var")
    for row in windows:
        q = " ".join(f"{v:5.2f}" for v in row["quartiles"])
        steps = f"{row['steps'][0]}-{row['steps'][1]}"
        print(
            f"    {steps:<11} {row['mean']:8.3f}      {q}    {row['at_zero']:5.0%}   {row['zero_std']:6.0%}"
        )


def summarise(
    recipe: DemoRecipe,
    task: str,
    seed: int,
    before: dict,
    after: dict,
    history: list[dict],
    trainer: Any,
    warm: Any,
) -> dict:
    """Print before -> after, per class and the reward diagnostics; return the figures.

    ``trainer``: the GRPO phase's :class:`agents.demo.run.DemoTrainer` (its ``step_rewards``, ``zero_std`` and
    ``eval_env``); ``warm``: the warm start's :class:`agents.demo.run.WarmStart` (typed loosely: this module
    sits below them and imports no torch)."""
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
