"""Thinking vs no thinking on one task: the held-out metric, the answer's length and GRPO's CPU per step.

    .venv/bin/python benchmarks/thinking.py --task counting --seeds 0 1 2 3 4 --out runs/think
    .venv/bin/python benchmarks/thinking.py --task counting --table-only --out runs/think

Perception-R1 argues that perception does better without an explicit reasoning chain. Both arms run the
demo's recipe (agents/demo RECIPES[task]: tiny Qwen2-VL, a warm start stopped in the same validation band,
the same GRPO steps, rate and seeds), greedy on the same test images; they differ only in the env's
``reasoning``:

* ``none``: the recipe as it is, the answer alone;
* ``think``: ``reasoning="think"`` (R1-V's prompt; reward = the task's reward on the ``<answer>`` part plus
  R1-V's 1.0 format term, perception_env/reasoning.py) and ``oracle_thinking="scene"``: the warm start
  learns ``<think>circle, square, circle.</think><answer>3</answer>``, the objects named in reading order,
  the enumeration a distilled R1-style model writes before a count (an empty think block would teach no
  chain at all). ``max_new_tokens`` is the longest oracle answer of any split, in the model's tokens,
  plus 2 (end of text and one spare), so no oracle answer is cut.

No SFT control is run (the comparison is between the arms). One JSON per arm and seed is kept in
``--out/ARM/TASK-seedN.json``; the table gives, per arm, the IQM over seeds and its 95% interval
(benchmarks/intervals.py, as benchmarks/learning.py's summary): the held-out metric before and after
GRPO and the gain (bootstrapped over seeds and the test split's distinct scenes), the greedy answers'
length after GRPO (whole completion and think block, tokens and characters), GRPO's completion length,
CPU seconds per GRPO step (evaluation excluded) and the share of groups whose G rewards were all equal
(bootstrapped over seeds). The last row is think minus none on the same seeds and scenes, and the
ratio of their CPU per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a clone
from agents.arguments import bounded  # noqa: E402
from benchmarks.intervals import Interval, bootstrap_intervals, scene_weights, score_matrix  # noqa: E402
from benchmarks.learning import FIGURES, task_intervals  # noqa: E402
from benchmarks.plots import DPI, PALETTE, Series, line_figure  # noqa: E402

ARMS = ("none", "think")


def thinking_recipe(recipe, tokenizer):
    """``recipe`` with ``reasoning="think"``, the oracle's scene chain, and room for its longest answer."""
    env_kwargs = {**recipe.env_kwargs, "reasoning": "think", "oracle_thinking": "scene"}
    think = replace(recipe, env_kwargs=env_kwargs)
    return replace(think, max_new_tokens=longest_oracle_tokens(think, tokenizer) + 2)


def longest_oracle_tokens(recipe, tokenizer) -> int:
    """The most tokens any oracle answer of the recipe's train, validation and test splits takes."""
    longest = 0
    for split in ("train", "val", "test"):
        env = recipe.make_env(split)
        for index in range(len(env.unwrapped.dataset)):
            env.reset(options={"index": index})
            answer = env.unwrapped.oracle_answer()
            longest = max(longest, len(tokenizer(answer, add_special_tokens=False)["input_ids"]))
    return longest


def answer_lengths(predictions: Path, tokenizer) -> dict[str, float]:
    """Mean length of the answers in an evaluation's ``predictions.jsonl``: the whole answer and its
    think block (perception_env.reasoning.split_thinking; "" without one), in tokens and characters."""
    from perception_env.reasoning import split_thinking

    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{predictions} holds no predictions")

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    answers = [row["answer"] for row in rows]
    thoughts = [split_thinking(a).thinking for a in answers]
    return {
        "answer_tokens": float(np.mean([tokens(a) for a in answers])),
        "answer_chars": float(np.mean([len(a) for a in answers])),
        "think_tokens": float(np.mean([tokens(t) for t in thoughts])),
        "think_chars": float(np.mean([len(t) for t in thoughts])),
    }


def chain_figures(predictions: Path) -> dict[str, float]:
    """How the think blocks of an evaluation's ``predictions.jsonl`` relate to the image and the answer:
    ``scene``, the share whose chain is the oracle's (the image's objects named in reading order,
    :meth:`perception_env.core.PerceptionEnv.scene_thinking`, from each record's target), and
    ``count``, the share whose chain names as many objects as the answer part says (a chain that is
    followed; "no objects." names 0)."""
    from perception_env.reasoning import NO_OBJECTS, reading_order, scene_thinking, split_thinking

    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{predictions} holds no predictions")
    scene = count = 0
    for row in rows:
        split = split_thinking(row["answer"])
        labels, boxes = row["target"]["labels"], row["target"]["boxes"]
        scene += split.thinking == scene_thinking([labels[i] for i in reading_order(boxes)])
        chain = split.thinking.strip().rstrip(".")
        named = 0 if split.thinking.strip() in ("", NO_OBJECTS) else len(chain.split(","))
        count += (split.answer or "").strip() == str(named)
    return {"scene": scene / len(rows), "count": count / len(rows)}


def grpo_figures(result: dict) -> dict[str, float]:
    """From a demo result (with its ``history``): CPU s per GRPO step (evaluation excluded), GRPO's mean
    completion length in tokens (end of text included) over all steps and over the first and last tenth,
    and the mean share of groups with G equal rewards (no learning signal)."""
    lengths = [
        row["completions/mean_length"] for row in result["history"] if "completions/mean_length" in row
    ]
    tenth = max(1, len(lengths) // 10)
    windows = result["reward_windows"]  # equal runs of steps: the mean of their means is the mean
    return {
        "grpo_steps": len(lengths),
        "cpu_s_per_step": result["grpo_cpu_s"] / len(lengths),
        "completion_tokens": float(np.mean(lengths)),
        "completion_tokens_first": float(np.mean(lengths[:tenth])),
        "completion_tokens_last": float(np.mean(lengths[-tenth:])),
        "zero_std": float(np.mean([w["zero_std"] for w in windows])),
        "zero_std_last": windows[-1]["zero_std"],
    }


def run_arm(task: str, arm: str, seed: int, out: Path, eval_every: int) -> dict:
    """One demo run of ``arm`` (no SFT control); saves ``out/ARM/TASK-seedN.json`` without the history."""
    from agents.demo import RECIPES, run_demo
    from agents.policies.tiny_model import build_tokenizer

    tokenizer = build_tokenizer()  # every tiny model's tokenizer (independent of the seed)
    recipe = RECIPES[task] if arm == "none" else thinking_recipe(RECIPES[task], tokenizer)
    folder = out / arm / f"{task}-seed{seed}"
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_demo(folder, seed=seed, task=task, progress=False, eval_every=eval_every, recipe=recipe)
    result.update(total_wall_s=time.perf_counter() - t0, total_cpu_s=time.process_time() - c0)
    return _save_arm(result, arm, recipe, folder, out / arm / f"{task}-seed{seed}.json")


def _save_arm(result: dict, arm: str, recipe, folder: Path, path: Path) -> dict:
    """``result`` (a demo result with its per-step ``history``, run in ``folder``) with GRPO's figures
    (:func:`grpo_figures`) and the greedy answers' lengths before and after GRPO (:func:`answer_lengths`,
    in the run's own tokens) instead of the history, saved as JSON at ``path``."""
    from transformers import AutoTokenizer

    result = {**result, **grpo_figures(result)}
    result.pop("history")
    tokenizer = AutoTokenizer.from_pretrained(str(folder / f"tiny-model-seed{result['seed']}"))
    result["lengths"] = {
        when: answer_lengths(folder / f"eval-{when}" / "predictions.jsonl", tokenizer)
        for when in ("before", "after")
    }
    result.update(arm=arm, max_new_tokens=recipe.max_new_tokens, env_kwargs=recipe.env_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def import_learning_run(saved: Path, out: Path) -> dict:
    """A no-thinking run that benchmarks/learning.py saved (``saved``: its ``TASK-seedN.json``, the demo's
    recipe unchanged, its SFT control ignored) as this comparison's ``none`` arm: GRPO's per-step
    completion lengths read back from the run's TensorBoard log (learning.py keeps no history)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.demo import RECIPES

    result = json.loads(saved.read_text())
    by_step: dict[int, float] = {}
    for events in sorted(Path(result["run_dir"]).glob("events.out.tfevents.*")):
        log = EventAccumulator(str(events), size_guidance={"scalars": 0})
        log.Reload()
        if "completions/mean_length" in log.Tags()["scalars"]:
            by_step.update({e.step: e.value for e in log.Scalars("completions/mean_length")})  # last wins
    if not by_step:
        raise ValueError(f"{result['run_dir']} holds no completions/mean_length: no GRPO log to read")
    result["history"] = [{"completions/mean_length": by_step[step]} for step in sorted(by_step)]
    result["imported_from"] = str(saved)
    folder = Path(result["run_dir"]).parent
    return _save_arm(result, "none", RECIPES[result["task"]], folder, out / "none" / saved.name)


def load_arm(out: Path, arm: str, task: str) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted((out / arm).glob(f"{task}-seed*.json"))]
    return sorted(runs, key=lambda r: r["seed"])


def seed_interval(values: list[float], **bootstrap) -> Interval:
    """IQM over seeds of one figure per seed and its 95% bootstrap interval over seeds."""
    return bootstrap_intervals({"y": [[v] for v in values]}, **bootstrap)["y"]  # [seeds x 1]


def paired_differences(none: list[dict], think: list[dict], **bootstrap) -> dict[str, Interval]:
    """think minus none of the held-out metric (points) ``before`` and ``after`` GRPO, and of the
    ``gain``, paired by seed and scene: IQM over seeds and its interval, seeds and scenes drawn alike for
    both arms (scenes within their class)."""
    if [r["seed"] for r in none] != [r["seed"] for r in think]:
        raise ValueError("the two arms must hold the same seeds")
    n, scenes = len(none), none[0]["per_sample"]["scene"]
    sign = 100.0 if none[0].get("higher_is_better", True) else -100.0
    figures = {}
    for when in ("before", "after"):
        # [2 * seeds x scenes]: none's rows, then think's; the columns are the sorted scene keys
        matrix, keys = score_matrix([(r["per_sample"]["scene"], r["per_sample"][when]) for r in none + think])
        figures[when] = sign * (matrix[n:] - matrix[:n])
    figures["gain"] = figures["after"] - figures["before"]
    of_scene = dict(zip(scenes, none[0]["per_sample"]["stratum"]))
    strata = [str(of_scene[key]) for key in keys]
    return bootstrap_intervals(figures, scene_weights(scenes, keys), strata, **bootstrap)


COLUMNS = (
    "arm",
    "seeds",
    "max new tokens",
    "warm-start steps (median)",
    "before",
    "GRPO after",
    "GRPO gain",
    "answer tokens / chars after",
    "think tokens / chars after",
    "GRPO completion tokens (first / last tenth)",
    "CPU s per GRPO step",
    "groups with equal rewards",
    "chains naming the scene / whose count is the answer, after",
)


def _chains(out: Path, arm: str, task: str, runs: list[dict], **bootstrap) -> str:
    """The chain figures (:func:`chain_figures`) after GRPO, IQM over seeds [95% interval], in %; "-"
    without thinking or without the runs' predictions."""
    paths = [out / arm / f"{task}-seed{r['seed']}" / "eval-after" / "predictions.jsonl" for r in runs]
    if arm != "think" or not all(p.is_file() for p in paths):
        return "-"
    figures = [chain_figures(p) for p in paths]
    scene, count = ([100.0 * f[key] for f in figures] for key in ("scene", "count"))
    return f"{seed_interval(scene, **bootstrap).format()} / {seed_interval(count, **bootstrap).format()}"


def comparison_table(out: Path, task: str, **bootstrap) -> str:
    """The Markdown table: one row per arm (IQM over seeds [95% interval]), then think minus none."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    arms = {arm: load_arm(out, arm, task) for arm in ARMS}
    for arm, runs in arms.items():
        if not runs:
            lines.append(f"| {arm} | not run |" + " - |" * (len(COLUMNS) - 2))
            continue
        ci = task_intervals(runs, **bootstrap)

        def per_seed(key: str, when: str = "after", digits: int = 1, runs=runs) -> str:
            return seed_interval([r["lengths"][when][key] for r in runs], **bootstrap).format(digits)

        first = seed_interval([r["completion_tokens_first"] for r in runs], **bootstrap).format()
        last = seed_interval([r["completion_tokens_last"] for r in runs], **bootstrap).format()
        cells = [
            arm,
            " ".join(str(r["seed"]) for r in runs),
            str(runs[0]["max_new_tokens"]),
            f"{np.median([r['sft_steps'] for r in runs]):.0f}",
            ci["before"].format(),
            ci["after"].format(),
            ci["gain"].format(signed=True),
            f"{per_seed('answer_tokens')} / {per_seed('answer_chars')}",
            f"{per_seed('think_tokens')} / {per_seed('think_chars')}",
            f"{first} / {last}",
            seed_interval([r["cpu_s_per_step"] for r in runs], **bootstrap).format(3),
            seed_interval([100.0 * r["zero_std"] for r in runs], **bootstrap).format() + "%",
            _chains(out, arm, task, runs, **bootstrap),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    none, think = arms["none"], arms["think"]
    if none and think and [r["seed"] for r in none] == [r["seed"] for r in think]:
        diff = paired_differences(none, think, **bootstrap)
        ratio = seed_interval(
            [t["cpu_s_per_step"] / n["cpu_s_per_step"] for n, t in zip(none, think)], **bootstrap
        ).format(2)
        cells = ["think - none", "same", "", ""] + [
            diff[k].format(signed=True) for k in ("before", "after", "gain")
        ]
        cells += ["", "", "", f"x{ratio} (think / none, per seed)", "", ""]
        lines.append("| " + " | ".join(cell or "-" for cell in cells) + " |")
    return "\n".join(lines)


def plot_comparison(out: Path, task: str, folder: Path = FIGURES) -> Path:
    """Held-out metric (%) vs GRPO's CPU seconds (evaluation excluded), a colour per seed, no thinking
    solid and thinking dashed, from the same band: ``folder/thinking-TASK.png``."""
    series = []
    for arm in ARMS:
        for r in load_arm(out, arm, task):
            points = [(cpu, 100.0 * m) for _, cpu, _, m in r["curve"]]
            label = f"{'thinking' if arm == 'think' else 'no thinking'}, seed {r['seed']}"
            series.append(Series(label, points, PALETTE[r["seed"] % len(PALETTE)], dashed=arm == "think"))
    if not series:
        raise ValueError(f"no runs of {task} in {out}")
    first = (load_arm(out, "none", task) or load_arm(out, "think", task))[0]
    figure = line_figure(
        series,
        title=f"{task}: held-out {first['metric_label']} ({first['eval_samples']} test images, "
        f"{first['distinct_scenes']['test']} distinct scenes, greedy); thinking dashed",
        x_label="GRPO training time, CPU seconds of one thread (evaluation excluded)",
        y_label=f"{first['metric_label']} (%)",
        y_range=(0, 100),
        size=(1000, 540),
    )
    # the legend beside the axes: inside, a corner would hide a seed's curve (every corner holds one)
    figure.axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, framealpha=1.0)
    path = folder / f"thinking-{task}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="counting", help="a key of agents/demo RECIPES")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=bounded(int, minimum=0), default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--eval-every",
        type=bounded(int, minimum=1),
        default=100,
        help="GRPO steps between held-out evaluations",
    )
    parser.add_argument("--out", default="runs/think")
    parser.add_argument(
        "--table-only", action="store_true", help="only the table and PNG from the saved runs"
    )
    parser.add_argument("--figures", default=str(FIGURES), help="where the PNG goes")
    parser.add_argument(
        "--none-from",
        help="take the no-thinking arm from benchmarks/learning.py's saved runs of the same recipe in this "
        "folder (TASK-seedN.json and its run) instead of running it",
    )
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table_only:
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(1)  # a model this small: threads only wait on each other
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        for arm in args.arms:
            (out / arm).mkdir(parents=True, exist_ok=True)
            for seed in args.seeds:
                if arm == "none" and args.none_from:
                    import_learning_run(Path(args.none_from) / f"{args.task}-seed{seed}.json", out)
                else:
                    run_arm(args.task, arm, seed, out, args.eval_every)
    print(comparison_table(out, args.task))
    print(f"wrote {plot_comparison(out, args.task, Path(args.figures))}")


if __name__ == "__main__":
    main()
