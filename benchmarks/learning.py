"""Does GRPO teach the tiny model, and does it beat more supervised training at equal compute?

    .venv/bin/python benchmarks/learning.py --tasks counting grounding detection --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/learning.py --tasks ocr --eval-every 100 --control-eval-every 250
    .venv/bin/python benchmarks/learning.py --plot-only          # tables and PNGs from the saved runs
    .venv/bin/python benchmarks/learning.py --tasks counting-points --target-order sorted --out runs/sorted
    .venv/bin/python benchmarks/learning.py --tasks counting --seeds 0 1 2 --algorithms all \\
        --warm-starts runs/learning --out runs/algorithms   # GRPO's variants from each seed's warm start

Each run is a demo recipe (agents/demo/recipes.py): tiny Qwen2-VL -> warm start stopped in a validation band
-> GRPO, with the greedy held-out paper metric every ``--eval-every`` GRPO steps. The control restores
the same warm start and takes ``control_sft_steps`` more supervised steps (about GRPO's CPU time; both
times are printed), evaluated every ``--control-eval-every`` steps. One JSON per task and seed is kept
in ``--out``; the tables and the learning curves (benchmarks/figures/learning-TASK.png: held-out metric
vs training CPU seconds, evaluation excluded) are made from all of them.

Two tables: one row per run (the demo's figures), and one row per task with the IQM over seeds and its
95% interval, bootstrapped over seeds and the test split's distinct scenes (benchmarks/intervals.py), for
the warm start, GRPO, the SFT control and the gains, with the number of distinct scenes the test and
validation figures rest on.

``--target-order`` and ``--reward-matching`` run a variant of the recipe (the order supervision lists an
image's objects; the reward's pairing of points or boxes), named in the tables and the PNG's file name;
``--no-control`` leaves the SFT control out.

``--algorithms`` compares policy-gradient variants (GRPO, DAPO, Dr. GRPO, GSPO, CISPO, RLOO, GDPO, GRPO with
dynamic sampling: benchmarks/algorithms.py, each a documented set of options) from each seed's warm start of
a plain run in ``--warm-starts`` (made there first when missing): one JSON per task, seed and variant in
``--out``, a table per task and benchmarks/figures/algorithms-TASK*.png (held-out curve, zero-variance
share, entropy).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a clone
from agents.arguments import bounded  # noqa: E402
from benchmarks import algorithms  # noqa: E402
from benchmarks.intervals import Interval, bootstrap_intervals, scene_weights, score_matrix  # noqa: E402
from benchmarks.plots import DPI, PALETTE, Series, line_figure  # noqa: E402

FIGURES = Path(__file__).resolve().parent / "figures"
TITLE_WIDTH = 96  # characters of a curve's title on one line at 11 pt in 900 px


def variant_recipe(task: str, target_order: str | None = None, reward_matching: str | None = None):
    """The demo's recipe for ``task`` (agents/demo/recipes.py RECIPES), with the order supervision lists an
    image's objects (``target_order``: agents/sft.py's ``"random"`` per image or ``"sorted"``, reading
    order) and the reward's pairing of predictions to targets (``reward_matching``: ``"hungarian"``, the
    paper's, or ``"listed"``, the order-sensitive ablation) replaced where given; ``None`` keeps the
    recipe's. Returns ``(recipe, variant)``: ``variant`` names what differs from the recipe ("" if
    nothing), for the tables and the curve's file name."""
    from agents.demo import RECIPES

    recipe, changed = RECIPES[task], []
    if target_order is not None and target_order != recipe.target_order:
        recipe = replace(recipe, target_order=target_order)
        changed.append(f"{target_order} targets")
    reward_config = recipe.env_kwargs.get("reward_config", {})
    if reward_matching is not None and reward_matching != reward_config.get("matching", "hungarian"):
        reward_config = {**reward_config, "matching": reward_matching}
        recipe = replace(recipe, env_kwargs={**recipe.env_kwargs, "reward_config": reward_config})
        changed.append(f"{reward_matching} matching")
    return recipe, ", ".join(changed)


def run(
    task: str,
    seed: int,
    out: Path,
    eval_every: int,
    control_eval_every: int,
    recipe=None,
    variant: str = "",
    control: bool = True,
) -> dict:
    """One demo run (``recipe``: the task's own by default) with its SFT control unless ``control`` is
    False; saves ``out/TASK-seedN.json`` (without the per-step history), ``variant`` in it."""
    from agents.demo import run_demo

    t0, c0 = time.perf_counter(), time.process_time()
    result = run_demo(
        out / f"{task}-seed{seed}",
        seed=seed,
        task=task,
        progress=False,
        eval_every=eval_every,
        recipe=recipe,
        control=control,
        control_eval_every=control_eval_every,
    )
    result.pop("history")
    result.update(
        total_wall_s=time.perf_counter() - t0, total_cpu_s=time.process_time() - c0, variant=variant
    )
    result["task"] = task  # the recipe's name: the demo's is the env's ("counting" for counting-points)
    (out / f"{task}-seed{seed}.json").write_text(json.dumps(result, indent=1))
    return result


def load_runs(out: Path) -> list[dict]:
    """The runs saved in ``out``, each under its recipe's name, the file's ``TASK`` (runs saved before
    :func:`run` wrote it kept the env's task: counting-points' would have replaced counting's figure)."""
    runs = []
    for path in sorted(out.glob("*-seed*.json")):
        runs.append({**json.loads(path.read_text()), "task": path.name.rsplit("-seed", 1)[0]})
    return runs


def run_label(run: dict) -> str:
    """``"counting-points"``, or ``"counting-points (sorted targets)"`` for a variant of the recipe."""
    return run["task"] + (f" ({run['variant']})" if run.get("variant") else "")


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}"


def table(runs: list[dict]) -> str:
    """The Markdown table of every run: warm start, GRPO and the SFT control, figures and CPU seconds."""
    lines = [
        "| task | metric | seed | warm-start steps | before | GRPO after | GRPO CPU s | SFT control after "
        "| control steps | control CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        c = r.get("control")
        control = (
            f"{_pct(c['after'])} ({c['gain']:+.1f}) | {c['steps']} | {c['cpu_s']:.0f}"
            if c
            else "not measured | - | -"
        )
        lines.append(
            f"| {run_label(r)} | {r['metric_label']} | {r['seed']} | {r['sft_steps']} | {_pct(r['before'])} "
            f"| {_pct(r['after'])} ({r['gain']:+.1f}) | {r['grpo_cpu_s']:.0f} | {control} |"
        )
    return "\n".join(lines)


def _scenes(run: dict, split: str) -> str:
    """``"200 (57)"``: images and distinct scenes of a run's test or validation figure."""
    images = run.get("eval_samples" if split == "test" else "val_samples")
    scenes = run.get("distinct_scenes", {}).get(split)
    return f"{images} ({scenes})" if images and scenes else "not recorded"


def _score_matrices(runs: list[dict]) -> tuple[dict[str, np.ndarray], np.ndarray, list[str] | None]:
    """Runs (one per seed, each with ``per_sample``) -> ``[seeds x scenes]`` matrices of the metric
    (fractions) ``before``, ``after`` and, where every run has it, ``control`` (a scene's score: the mean
    over its test images); the scenes' weights (their images) and classes (``per_sample["stratum"]``:
    the true count, the target's shape ...; None where the runs saved none)."""
    per_sample = [r["per_sample"] for r in runs]

    def matrix(values: list[list[float]]) -> np.ndarray:
        return score_matrix([(p["scene"], v) for p, v in zip(per_sample, values)])[0]

    matrices = {
        "before": matrix([p["before"] for p in per_sample]),
        "after": matrix([p["after"] for p in per_sample]),
    }
    if all(r.get("control", {}).get("per_sample_after") for r in runs):
        matrices["control"] = matrix([r["control"]["per_sample_after"] for r in runs])
    scenes = per_sample[0]["scene"]
    keys = sorted(set(scenes))  # score_matrix's columns
    strata = None
    if "stratum" in per_sample[0]:  # a scene's class is a function of its content: any of its images
        of_scene = dict(zip(scenes, per_sample[0]["stratum"]))
        strata = [str(of_scene[key]) for key in keys]
    return matrices, scene_weights(scenes, keys), strata


def task_intervals(runs: list[dict], **bootstrap) -> dict[str, Interval]:
    """One task's runs (one per seed, each with ``per_sample``) -> IQM over seeds and 95% interval of:
    ``before``, ``after``, ``control_after`` (%), and in points ``gain``, ``control_gain`` and
    ``grpo_minus_control`` (positive when GRPO ended better). A scene's score is the mean over its
    test images, weighted by their number (the point is the demo's figure over all images); where the
    runs saved each image's class (``per_sample["stratum"]``: the true count, the target's shape ...),
    scenes are drawn within their class. Runs without a control leave the control's entries out."""
    sign = 100.0 if runs[0].get("higher_is_better", True) else -100.0
    scores, weights, strata = _score_matrices(runs)
    before, after = scores["before"], scores["after"]
    matrices = {"before": 100.0 * before, "after": 100.0 * after, "gain": sign * (after - before)}
    if "control" in scores:
        control = scores["control"]
        matrices.update(
            control_after=100.0 * control,
            control_gain=sign * (control - before),
            grpo_minus_control=sign * (after - control),
        )
    return bootstrap_intervals(matrices, weights, strata, **bootstrap)


def difference_intervals(runs: list[dict], baseline: list[dict], **bootstrap) -> dict[str, Interval]:
    """Two variants of one task (``--target-order sorted`` vs the recipe's random order ...), paired by
    seed (the seeds both have: the same initial weights and data order) and test image -> the IQM over
    seeds of ``runs`` minus ``baseline``, in points, with its 95% interval over seeds and scenes (as
    :func:`task_intervals`), for ``before``, ``after`` and ``control_after`` where both have a control.
    Returns ``{}`` when the two share no seed."""
    ours, theirs = ({r["seed"]: r for r in rs} for rs in (runs, baseline))
    seeds = sorted(set(ours) & set(theirs))
    if not seeds:
        return {}
    a, weights, strata = _score_matrices([ours[s] for s in seeds])
    b, weights_b, _ = _score_matrices([theirs[s] for s in seeds])
    if not np.array_equal(weights, weights_b):
        raise ValueError("the two sets of runs were tested on different images")
    names = {"before": "before", "after": "after", "control": "control_after"}
    matrices = {names[k]: 100.0 * (a[k] - b[k]) for k in a if k in b}
    return bootstrap_intervals(matrices, weights, strata, **bootstrap)


def difference_table(runs: list[dict], baseline: list[dict], **bootstrap) -> str:
    """One row per task both hold: ``runs`` minus ``baseline``, IQM [95% interval], in points."""
    columns = ("comparison", "seeds", "before", "GRPO after", "SFT control after")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for task in sorted({r["task"] for r in runs} & {r["task"] for r in baseline}):
        mine, theirs = ([r for r in rs if r["task"] == task] for rs in (runs, baseline))
        ci = difference_intervals(mine, theirs, **bootstrap)
        if not ci:
            continue
        seeds = sorted({r["seed"] for r in mine} & {r["seed"] for r in theirs})
        cells = [
            ci[k].format(signed=True) if k in ci else "not measured"
            for k in ("before", "after", "control_after")
        ]
        name = f"{run_label(mine[0])} - {run_label(theirs[0])}"
        lines.append("| " + " | ".join([name, " ".join(map(str, seeds))] + cells) + " |")
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    "task",
    "metric",
    "seeds",
    "test images (distinct scenes)",
    "validation images (distinct scenes)",
    "before",
    "GRPO after",
    "GRPO gain",
    "SFT control after",
    "control gain",
    "GRPO - control",
    "CPU s, GRPO / control",
)


def summary_table(runs: list[dict], **bootstrap) -> str:
    """One row per task: IQM over seeds [95% bootstrap interval over seeds and scenes]."""
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    for task in sorted({run_label(r) for r in runs}):
        mine = sorted((r for r in runs if run_label(r) == task), key=lambda r: r["seed"])
        first = mine[0]
        head = [task, first["metric_label"], " ".join(str(r["seed"]) for r in mine)]
        head += [_scenes(first, "test"), _scenes(first, "val")]
        if not all("per_sample" in r for r in mine):
            cells = ["no per-sample results (saved before intervals: rerun)"] + ["-"] * 5
        else:
            ci = task_intervals(mine, **bootstrap)
            missing = "not measured"
            cells = [
                ci["before"].format(),
                ci["after"].format(),
                ci["gain"].format(signed=True),
                ci["control_after"].format() if "control_after" in ci else missing,
                ci["control_gain"].format(signed=True) if "control_gain" in ci else missing,
                ci["grpo_minus_control"].format(signed=True) if "grpo_minus_control" in ci else missing,
            ]
        cpu = [f"{sum(r['grpo_cpu_s'] for r in mine) / len(mine):.0f}"]
        controls = [r["control"]["cpu_s"] for r in mine if r.get("control")]
        cpu.append(f"{sum(controls) / len(controls):.0f}" if len(controls) == len(mine) else "-")
        lines.append("| " + " | ".join(head + cells + [" / ".join(cpu)]) + " |")
    return "\n".join(lines)


def curve_band(curves: list[list[tuple[float, float]]], **bootstrap) -> list[tuple[float, float, float]]:
    """Seeds' curves ``[(cpu_s, value)]`` evaluated at the same steps -> ``[(median cpu_s, low, high)]``:
    the 95% bootstrap interval over seeds of the IQM at each evaluation (the evaluations along the way
    keep no per-sample results, so scenes are not resampled here). ``[]`` when the curves differ in length
    or there are fewer than 3 seeds."""
    if len(curves) < 3 or len({len(c) for c in curves}) != 1:
        return []
    band = []
    for points in zip(*curves):
        xs, ys = zip(*points)
        ci = bootstrap_intervals({"y": [[y] for y in ys]}, **bootstrap)["y"]  # [seeds x 1 scene]
        band.append((float(sorted(xs)[len(xs) // 2]), ci.low, ci.high))
    return band


def plot(runs: list[dict], task: str, folder: Path = FIGURES) -> Path:
    """:func:`learning_figure` saved as ``folder/learning-TASK.png``; a variant of the recipe's runs as
    ``learning-TASK-VARIANT.png`` (``learning-counting-points-sorted-targets.png``)."""
    variant = next((r.get("variant") or "" for r in runs if r["task"] == task), "")
    slug = "".join(c if c.isalnum() else "-" for c in variant).strip("-")
    path = folder / f"learning-{task}{'-' + slug if slug else ''}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    learning_figure(runs, task).savefig(path, dpi=DPI)
    return path


def learning_figure(runs: list[dict], task: str) -> Figure:
    """Held-out metric (%) vs training CPU seconds: GRPO solid, the SFT control dashed, a colour per seed;
    with 3 seeds or more, shaded: the 95% interval over seeds of the IQM at each evaluation."""
    mine = [r for r in runs if r["task"] == task]
    series = []
    grpo_curves, control_curves = [], []
    for r in mine:
        color = PALETTE[r["seed"] % len(PALETTE)]
        grpo_curves.append([(cpu, 100 * m) for _, cpu, _, m in r["curve"]])
        series.append(Series(f"GRPO, seed {r['seed']}", grpo_curves[-1], color))
        control = r.get("control")
        if control:
            points = [(cpu, 100 * (r["before"] if m is None else m)) for _, cpu, _, m in control["curve"]]
            control_curves.append(points)
            series.append(Series(f"more SFT (control), seed {r['seed']}", points, color, dashed=True))
    label = mine[0]["metric_label"]
    rising = mine[0].get("higher_is_better", True)
    scenes = mine[0].get("distinct_scenes", {}).get("test")
    images = mine[0].get("eval_samples", 200)
    figure = line_figure(
        series,
        y_range=(0, 100),
        legend_at="bottom right" if rising else "top right",
        # wrapped: a longer task name or variant runs past the 900-px figure's edge on one line
        title=textwrap.fill(
            f"{run_label(mine[0])}: held-out {label} ({images} test images"
            + (f", {scenes} distinct scenes" if scenes else "")
            + f", greedy{'' if rising else ', lower is better'}) from the same warm start",
            TITLE_WIDTH,
        ),
        x_label="training time, CPU seconds of one thread (evaluation excluded)",
        y_label=f"{label} (%)",
    )
    axes = figure.axes[0]
    for curves, hatch in ((grpo_curves, None), (control_curves, "//")):
        band = curve_band(curves)
        if band:
            xs, lows, highs = zip(*band)
            axes.fill_between(xs, lows, highs, color="0.5", alpha=0.15, hatch=hatch, linewidth=0, zorder=0)
    return figure


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from agents.demo.recipes import RECIPES
    from perception_env.rewards.matching import MATCHINGS

    # every demo recipe is offered; the default run: the four single-object tasks (the many-object ones,
    # detection-multi and counting-points: issue 20)
    default_tasks = ["counting", "grounding", "detection", "ocr"]
    parser.add_argument("--tasks", nargs="+", default=default_tasks, choices=list(RECIPES))
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=bounded(int, minimum=0),
        default=[0, 1, 2, 3, 4],
        help="at least 5 for the interval table",
    )
    # checked here: 0 would otherwise fail only after a warm start had been made
    every = bounded(int, minimum=1)
    parser.add_argument(
        "--eval-every", type=every, default=25, help="GRPO steps between held-out evaluations"
    )
    parser.add_argument("--control-eval-every", type=every, default=100, help="SFT steps between evaluations")
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--plot-only", action="store_true", help="only the table and PNGs from saved runs")
    # variants of the recipe, for the comparisons of issue 20 (each into its own --out: one JSON per task
    # and seed); the defaults keep the recipe's
    parser.add_argument(
        "--target-order",
        choices=["random", "sorted"],
        help="the order supervision lists an image's objects: random per image, or sorted (reading order)",
    )
    parser.add_argument(
        "--reward-matching",
        choices=MATCHINGS,
        help="pair predictions with targets by Hungarian matching (the paper) or in listed order (ablation)",
    )
    parser.add_argument("--no-control", action="store_true", help="GRPO only, no SFT control")
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        help="also print --out's runs minus DIR's, paired by seed and test image (e.g. sorted vs random order)",
    )
    parser.add_argument(
        "--algorithms",
        nargs="+",
        metavar="NAME",
        help=f"compare policy-gradient variants from each seed's warm start: {', '.join(algorithms.ALL)}, or all "
        "(benchmarks/algorithms.py: the options each sets and their source)",
    )
    parser.add_argument(
        "--num-iterations",
        type=bounded(int, minimum=1),  # refused here, not after the warm starts it would first make
        default=1,
        metavar="MU",
        help="with --algorithms: policy updates per rollout batch for every variant (GRPO's num_iterations, "
        "TRL's name; the recipes' 1 keeps the ratio at 1, where clipping never acts); use another --out",
    )
    parser.add_argument(
        "--warm-starts",
        default="runs/learning",
        help="with --algorithms: the --out of plain runs whose TASK-seedN/warm-start-seedN every variant starts "
        "from; a missing one is made there by the plain run (the demo, without the SFT control)",
    )
    return parser


def quiet_single_thread_torch() -> None:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)  # a model this small: threads only wait on each other
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def compare_algorithms(args: argparse.Namespace, out: Path) -> None:
    """``--algorithms``: every variant of every task and seed not yet in ``out``, then per task its table and
    figures."""
    names = algorithms.resolve(args.algorithms)
    if not args.plot_only:
        quiet_single_thread_torch()
        warm_root = Path(args.warm_starts)
        warm_root.mkdir(parents=True, exist_ok=True)

        def make_warm(task: str, seed: int) -> None:
            run(task, seed, warm_root, args.eval_every, args.control_eval_every, control=False)

        common = {"num_iterations": args.num_iterations} if args.num_iterations != 1 else None
        algorithms.run_all(args.tasks, args.seeds, names, warm_root, out, args.eval_every, make_warm, common)
    runs = [r for r in algorithms.load_runs(out) if r["algorithm"] in names and r["task"] in args.tasks]
    if not runs:
        raise SystemExit(f"no runs in {out} (TASK-seedN-NAME.json): run without --plot-only first")
    for task in sorted({r["task"] for r in runs}):
        print(f"{task}:")
        print(algorithms.table(runs, task))
        for path in algorithms.figures(runs, task, algorithms.FIGURES):
            print(f"wrote {path}")


def main() -> None:
    args = argument_parser().parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.algorithms:
        compare_algorithms(args, out)
        return
    if not args.plot_only:
        quiet_single_thread_torch()
        for task in args.tasks:
            recipe, variant = variant_recipe(task, args.target_order, args.reward_matching)
            for seed in args.seeds:
                run(
                    task,
                    seed,
                    out,
                    args.eval_every,
                    args.control_eval_every,
                    recipe,
                    variant,
                    not args.no_control,
                )
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no runs in {out} (TASK-seedN.json): run without --plot-only first")
    print(table(runs))
    print()
    print(summary_table(runs))
    if args.compare_with:
        print()
        print(difference_table(runs, load_runs(Path(args.compare_with))))
    for task in sorted({r["task"] for r in runs}):
        print(f"wrote {plot(runs, task)}")


if __name__ == "__main__":
    main()
