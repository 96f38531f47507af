"""Which policy-gradient variant learns perception fastest here? Each one from the same warm start.

    .venv/bin/python benchmarks/learning.py --tasks counting --seeds 0 1 2 --algorithms all \\
        --warm-starts runs/learning-ci --out runs/algorithms

:data:`VARIANTS` maps each name to the options it sets over the demo recipe's GRPO options (agents/demo's
``DemoRecipe.grpo_config``), with where the setting comes from. A run loads the seed's warm start from
``WARM/TASK-seedN/warm-start-seedN``, the folder benchmarks/learning.py's demo run of the same task and seed
writes (made first when missing), so every variant of a seed starts from the same weights, and trains
the recipe's number of steps (the same for every variant: each run's CPU seconds are reported beside it,
since dynamic sampling spends more rollouts per step). Saved per run: ``OUT/TASK-seedN-NAME.json`` with the
held-out curve ``[(step, train CPU s, wall s, metric)]`` and per step the share of generated groups whose G
rewards were equal (``zero_var``), the sampled tokens' entropy, the mean reward and the rollouts spent.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from benchmarks.plots import DPI, PALETTE, Series, line_figure

FIGURES = Path(__file__).resolve().parent / "figures"
TITLE_WIDTH = 100  # characters: a longer title runs past the 900-px figure's edge on one line


@dataclass(frozen=True)
class Variant:
    """A policy-gradient variant as options: ``agent`` (agents/registry.py's name), the config fields it sets
    over the recipe's GRPO options, per task what depends on the task's reward, and the setting's source."""

    agent: str
    options: dict
    source: str
    task_options: dict[str, dict] = field(default_factory=dict)
    label: str = ""


# GDPO's components are the env's own reward terms with the env's own weights, so its objective is the
# task's reward: counting (answer_format number) is scored by `exact` alone; grounding's recipe is
# iou^2 + 0.2 x format; detection's paper reward 0.25 format + 0.75 F1 + label + IoU.
GDPO_REWARD_WEIGHTS = {
    "counting": {"exact": 1.0},
    "grounding": {"iou_power": 1.0, "format": 0.2},
    "detection": {"format": 0.25, "f1": 0.75, "label": 1.0, "iou": 1.0},
}

VARIANTS: dict[str, Variant] = {
    "grpo": Variant(
        "grpo",
        {},
        "Perception-R1 / DeepSeekMath GRPO as the demo recipe sets it: loss_type grpo (per-answer token mean), "
        "scale_rewards group, epsilon 0.2",
        label="GRPO (paper)",
    ),
    "dapo": Variant(
        "grpo",
        {"loss_type": "dapo", "epsilon_low": 0.2, "epsilon_high": 0.28, "filter_groups": True},
        "verl recipe/dapo: loss_agg_mode token-mean, clip_ratio_low 0.2, clip_ratio_high 0.28, "
        "algorithm.filter_groups.enable (max_num_gen_batches 10, our default)",
        label="DAPO",
    ),
    "dr_grpo": Variant(
        "grpo",
        {"loss_type": "dr_grpo", "scale_rewards": "none"},
        "Dr. GRPO (Liu et al. 2025), TRL loss_type dr_grpo with scale_rewards none: no std division, "
        "sum / (N x max_new_tokens)",
        label="Dr. GRPO",
    ),
    "gspo": Variant(
        "grpo",
        {
            "loss_type": "grpo",
            "importance_sampling_level": "sequence",
            "epsilon_low": 3e-4,
            "epsilon_high": 4e-4,
        },
        "GSPO (Zheng et al. 2025): sequence-level ratio, clip range 3e-4 / 4e-4, TRL importance_sampling_level "
        "sequence with loss_type grpo",
        label="GSPO",
    ),
    "cispo": Variant(
        "grpo",
        {"loss_type": "cispo", "epsilon_high": 5.0},
        "CISPO (MiniMax-M1) as TRL's loss_type cispo, epsilon_high 5.0 (TRL's recommended value, ScaleRL's "
        "epsilon_max)",
        label="CISPO",
    ),
    "rloo": Variant(
        "rloo",
        {},
        "RLOO (Ahmadian et al. 2024): agents/rloo, leave-one-out baseline, sequence log-prob, no std division",
        label="RLOO",
    ),
    "gdpo": Variant(
        "grpo",
        {"multi_objective_aggregation": "normalize_then_sum"},
        "GDPO: TRL multi_objective_aggregation normalize_then_sum over the env's reward terms, with the env's "
        "weights (GDPO_REWARD_WEIGHTS)",
        task_options={task: {"reward_weights": w} for task, w in GDPO_REWARD_WEIGHTS.items()},
        label="GDPO",
    ),
    # DAPO's dynamic sampling alone on the paper's GRPO: its effect isolated from the loss changes
    "grpo+ds": Variant(
        "grpo",
        {"filter_groups": True},
        "GRPO (paper) plus verl's DAPO dynamic sampling only (filter_groups, max_num_gen_batches 10)",
        label="GRPO + dynamic sampling",
    ),
}

ALL = tuple(VARIANTS)


def resolve(names: Iterable[str]) -> list[str]:
    """``["all"]`` -> every variant; otherwise the names, checked (a one-line error names the known ones)."""
    names = list(names)
    if names == ["all"]:
        return list(ALL)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {unknown}; known: {', '.join(ALL)} (or all)")
    return names


def variant_options(name: str, task: str, common: dict | None = None) -> dict:
    """The options variant ``name`` sets on ``task``: ``common`` (set for every variant of a sweep, e.g.
    ``{"num_iterations": 2}``), then the variant's own, then those that depend on the task's reward."""
    variant = VARIANTS[name]
    return {**(common or {}), **variant.options, **variant.task_options.get(task, {})}


def check_common(names: Iterable[str], common: dict | None) -> None:
    """Raise :class:`SetupError` before any run when a variant's agent has no field for one of the sweep's
    ``common`` options (RLOO trains once per batch: no ``num_iterations``)."""
    from agents.config import SetupError
    from agents.registry import AGENTS

    for name in names:
        fields = {f.name for f in dataclasses.fields(AGENTS[VARIANTS[name].agent].config_class)}
        missing = sorted(set(common or {}) - fields)
        if missing:
            raise SetupError(
                f"{name} ({VARIANTS[name].agent} agent) has no option {', '.join(missing)}: leave {name} out "
                "of --algorithms"
            )


def variant_config(
    name: str, task: str, recipe, model: str, out_dir: Path, seed: int, common: dict | None = None
):
    """The config of variant ``name`` on ``task``: the recipe's GRPO options (``recipe.grpo_config``) with
    :func:`variant_options` set; for another agent (RLOO) its own config class built from the shared
    training options."""
    from agents.config import SetupError, TrainConfig
    from agents.registry import AGENTS

    variant = VARIANTS[name]
    if variant.task_options and task not in variant.task_options:
        raise SetupError(
            f"{name} needs task options for {task}; it has them for {sorted(variant.task_options)}"
        )
    options = variant_options(name, task, common)
    base = dataclasses.replace(recipe.grpo_config(model, out_dir, seed), run_name=name)
    config_class = AGENTS[variant.agent].config_class
    if isinstance(base, config_class):
        return dataclasses.replace(base, **options)
    # the options every agent shares (data, sampling, optimiser, logging), and the recipe's KL weight
    shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig) if f.init}
    return config_class(**shared, beta=base.beta, **options)


def warm_start_dir(warm_root: Path, task: str, seed: int) -> Path:
    """Where benchmarks/learning.py's demo run of ``task`` and ``seed`` saved its warm start."""
    return warm_root / f"{task}-seed{seed}" / f"warm-start-seed{seed}"


def run_variant(
    task: str, seed: int, name: str, warm_root: Path, out: Path, eval_every: int, common: dict | None = None
) -> dict:
    """Variant ``name`` (with the sweep's ``common`` options) trained from the seed's saved warm start for the
    recipe's steps; saves and returns ``out/TASK-seedN-NAME.json``."""
    import torch

    from agents.demo import RECIPES, DemoTrainer, metric_value, per_sample_metric
    from agents.dynamic_sampling import TooManyGenerationBatches
    from agents.policies.qwen_vl import QwenVLPolicy
    from agents.registry import AGENTS
    from agents.trainer import evaluate

    recipe = RECIPES[task]
    warm = warm_start_dir(warm_root, task, seed)
    folder = out / f"{task}-seed{seed}"
    torch.manual_seed(seed)
    policy = QwenVLPolicy.from_pretrained(str(warm))
    config = variant_config(name, task, recipe, str(warm), folder, seed, common)
    config.eval_every, config.eval_samples = eval_every, recipe.eval_samples
    agent = AGENTS[VARIANTS[name].agent](policy, config)
    train_env, test_env = recipe.make_env("train"), recipe.make_env("test")
    before = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
    trainer = DemoTrainer(agent, config, folder / name, env=train_env, eval_env=test_env, progress=False)
    stopped = None
    try:
        history = trainer.train()
    except TooManyGenerationBatches as error:  # dynamic sampling found too few groups with a signal
        history, stopped = trainer.history, {"step": trainer.step, "reason": str(error)}
    cpu, wall = trainer.clock.elapsed()
    after = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
    m_before, m_after = metric_value(before, recipe), metric_value(after, recipe)
    per_step = step_series(history, config.prompts_per_step * config.group_size, config.prompts_per_step)
    result = {
        "task": task,
        "seed": seed,
        "algorithm": name,
        "agent": VARIANTS[name].agent,
        "options": variant_options(name, task, common),
        "source": VARIANTS[name].source,
        "warm_start": str(warm),
        "metric": recipe.metric,
        "metric_label": recipe.metric_label,
        "higher_is_better": recipe.higher_is_better,
        "eval_samples": before["n"],
        "before": m_before,
        "after": m_after,
        "gain": recipe.gain(m_before, m_after),
        "per_sample_after": per_sample_metric(after, test_env, recipe),
        "steps": trainer.step,
        "total_steps": config.total_steps,
        "stopped": stopped,
        "grpo_cpu_s": cpu,
        "grpo_wall_s": wall,
        "curve": [(0, 0.0, 0.0, m_before)]
        + [
            (i + 1, row["time/train_cpu_s"], row["time/train_wall_s"], _eval_value(row, recipe, metric_value))
            for i, row in enumerate(history)
            if "time/train_cpu_s" in row
        ],
        **per_step,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{task}-seed{seed}-{name}.json").write_text(json.dumps(result, indent=1))
    return result


def _eval_value(row: dict, recipe, metric_value) -> float:
    return metric_value({"metrics": {recipe.metric: row.get(f"eval/{recipe.metric}")}}, recipe)


def step_series(
    history: list[dict], rollouts_per_batch: int, groups_per_batch: int
) -> dict[str, list[float]]:
    """Per step, from the Trainer's logged rows: ``zero_var``, the share of the step's *generated* groups
    whose rewards were all equal (with dynamic sampling, the dropped ones over every generation batch; the
    trained batch then has none); ``entropy`` (nats per sampled token); ``reward`` (mean over the trained
    answers); ``length`` (mean completion tokens); ``rollouts`` (cumulative completions sampled)."""
    zero_var, rollouts, total = [], [], 0
    for row in history:
        if "dynamic_sampling/groups_dropped" in row:
            generated = groups_per_batch * (row["dynamic_sampling/extra_rounds"] + 1)
            zero_var.append(row["dynamic_sampling/groups_dropped"] / generated)
            total = int(row["dynamic_sampling/rollouts_total"])
        else:
            zero_var.append(row["train/frac_reward_zero_std"])
            total += rollouts_per_batch
        rollouts.append(total)
    return {
        "zero_var": zero_var,
        "entropy": [row.get("train/entropy", float("nan")) for row in history],
        "reward": [row["reward/mean"] for row in history],
        "length": [row.get("completions/mean_length", float("nan")) for row in history],
        "rollouts": rollouts,
    }


def run_all(
    tasks: list[str],
    seeds: list[int],
    names: list[str],
    warm_root: Path,
    out: Path,
    eval_every: int,
    make_warm,
    common: dict | None = None,
) -> None:
    """Every (task, seed, variant) whose JSON is not in ``out`` yet, seeds outermost (an interrupted sweep
    has every variant of its first seeds); ``make_warm(task, seed)`` runs the demo when a warm start is
    missing; ``common``: options every variant of the sweep sets (:func:`variant_options`)."""
    check_common(names, common)
    for task in tasks:
        for seed in seeds:
            if not warm_start_dir(warm_root, task, seed).is_dir():
                make_warm(task, seed)
            for name in names:
                if (out / f"{task}-seed{seed}-{name}.json").exists():
                    continue
                r = run_variant(task, seed, name, warm_root, out, eval_every, common)
                print(
                    f"{task} seed {seed} {name:8s}: {r['metric_label']} {r['before']:6.1%} -> {r['after']:6.1%} "
                    f"in {r['grpo_cpu_s']:.0f} s of CPU, {r['rollouts'][-1] if r['rollouts'] else 0} rollouts"
                    + (f"; stopped at step {r['stopped']['step']}" if r["stopped"] else ""),
                    flush=True,
                )


def load_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*-seed*-*.json"))]


def _tail_mean(values: list[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of ``values`` (at least one)."""
    n = max(1, int(round(len(values) * fraction)))
    return float(np.nanmean(values[-n:])) if values else float("nan")


REACH = (
    0.95  # the held-out level whose first evaluation at or above it times a run (higher-is-better metrics)
)


def first_reach(run: dict, level: float = REACH) -> float | None:
    """Training CPU seconds at the first evaluation with the metric >= ``level``; None if never (or the metric
    falls as it improves)."""
    if not run.get("higher_is_better", True):
        return None
    return next((cpu for _, cpu, _, value in run["curve"] if value >= level), None)


def table(runs: list[dict], task: str) -> str:
    """One row per variant of ``task``: held-out metric after (mean over seeds, then each seed), gain, the CPU s
    to the first evaluation >= :data:`REACH` (each seed), training CPU s and rollouts (means), the
    zero-variance share of generated groups over the run and its last 10% of steps, the entropy and the answer
    length (tokens) of the last 10%."""
    mine = [r for r in runs if r["task"] == task]
    lines = [
        f"| algorithm | after, mean (per seed) | gain, points | CPU s to {100 * REACH:.0f}% (per seed) | CPU s "
        "| rollouts | zero-var, run / last 10% | entropy, last 10% | length, last 10% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [n for n in VARIANTS if any(r["algorithm"] == n for r in mine)]:
        rs = sorted((r for r in mine if r["algorithm"] == name), key=lambda r: r["seed"])
        after = " / ".join(f"{100 * r['after']:.1f}" for r in rs)
        stopped = [f"seed {r['seed']} stopped at step {r['stopped']['step']}" for r in rs if r["stopped"]]
        reach = " / ".join("never" if first_reach(r) is None else f"{first_reach(r):.0f}" for r in rs)
        lines.append(
            f"| {VARIANTS[name].label} | {100 * np.mean([r['after'] for r in rs]):.1f} ({after})"
            + (f"; {', '.join(stopped)}" if stopped else "")
            + f" | {np.mean([r['gain'] for r in rs]):+.1f} | {reach}"
            f" | {np.mean([r['grpo_cpu_s'] for r in rs]):.0f}"
            f" | {np.mean([r['rollouts'][-1] for r in rs]):,.0f}"
            f" | {100 * np.mean([np.mean(r['zero_var']) for r in rs]):.0f}% /"
            f" {100 * np.mean([_tail_mean(r['zero_var']) for r in rs]):.0f}%"
            f" | {np.mean([_tail_mean(r['entropy']) for r in rs]):.3f}"
            f" | {np.mean([_tail_mean(r['length']) for r in rs]):.2f} |"
        )
    return "\n".join(lines)


def _style(name: str) -> tuple[tuple[int, int, int], bool]:
    """A variant's colour and dash: GRPO + dynamic sampling is GRPO's colour, dashed."""
    if name == "grpo+ds":
        return PALETTE[0], True
    return PALETTE[list(VARIANTS).index(name) % len(PALETTE)], False


def mean_curve(runs: list[dict], key: str = "curve") -> list[tuple[float, float]]:
    """Seeds' held-out curves evaluated at the same steps -> ``[(mean CPU s, mean metric %)]`` up to the
    shortest one (a run stopped early ends its variant's curve there)."""
    n = min(len(r[key]) for r in runs)
    return [
        (float(np.mean([r[key][i][1] for r in runs])), float(np.mean([100 * r[key][i][3] for r in runs])))
        for i in range(n)
    ]


def smoothed(values: list[float], window: int) -> list[tuple[float, float]]:
    """``[(last step of the window, mean)]`` over consecutive windows of ``window`` steps."""
    return [
        (float(min(k + window, len(values))), float(np.nanmean(values[k : k + window])))
        for k in range(0, len(values), window)
    ]


def updates_per_batch(runs: list[dict]) -> int:
    """The sweep's ``num_iterations`` (``--num-iterations``), one for all of ``runs``."""
    found = {r.get("options", {}).get("num_iterations", 1) for r in runs}
    if len(found) != 1:
        raise ValueError(
            f"runs with different updates per batch ({sorted(found)}) in one sweep: keep each in its --out"
        )
    return found.pop()


def figures(runs: list[dict], task: str, folder: Path = FIGURES) -> list[Path]:
    """``algorithms-TASK.png`` (held-out metric vs training CPU s, mean over seeds), ``-zero-var.png``,
    ``-entropy.png`` and ``-length.png`` (per step, mean over seeds, in windows of 25 steps);
    ``algorithms-TASK-muN*.png`` for a sweep with N updates per batch."""
    mine = [r for r in runs if r["task"] == task]
    names = [n for n in VARIANTS if any(r["algorithm"] == n for r in mine)]
    by_name = {n: [r for r in mine if r["algorithm"] == n] for n in names}
    seeds = sorted({r["seed"] for r in mine})
    first = mine[0]
    mu = updates_per_batch(mine)
    where = f"seeds {' '.join(map(str, seeds))}, mean; same warm start per seed" + (
        f"; {mu} updates per batch" if mu != 1 else ""
    )
    made = []

    def save(figure: Figure, suffix: str) -> None:
        # a sweep with several updates per batch beside the one-update figures, not over them
        path = folder / f"algorithms-{task}{f'-mu{mu}' if mu != 1 else ''}{suffix}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI)
        made.append(path)

    def series(points_of) -> list[Series]:
        out = []
        for n in names:
            color, dashed = _style(n)
            out.append(Series(VARIANTS[n].label, points_of(by_name[n]), color, dashed))
        return out

    save(
        line_figure(
            series(mean_curve),
            title=textwrap.fill(
                f"{task}: held-out {first['metric_label']} ({first['eval_samples']} test images, greedy), {where}",
                TITLE_WIDTH,
            ),
            x_label="training time, CPU seconds of one thread (evaluation excluded)",
            y_label=f"{first['metric_label']} (%)",
            y_range=(0, 100),
        ),
        "",
    )
    for key, label, suffix, y_range in (
        ("zero_var", "groups with G equal rewards (% of generated)", "-zero-var", (0, 100)),
        ("entropy", "entropy of the sampled tokens (nats per token)", "-entropy", None),
        ("length", "sampled answer length (tokens)", "-length", None),
    ):
        scale = 100.0 if key == "zero_var" else 1.0

        def per_step(rs, key=key, scale=scale):
            n = min(len(r[key]) for r in rs)
            values = [scale * float(np.mean([r[key][i] for r in rs])) for i in range(n)]
            return smoothed(values, 25)

        save(
            line_figure(
                series(per_step),
                title=textwrap.fill(f"{task}: {label}, {where}, windows of 25 steps", TITLE_WIDTH),
                x_label="step",
                y_label=label,
                y_range=y_range,
                legend_at="top right",
            ),
            suffix,
        )
    return made
