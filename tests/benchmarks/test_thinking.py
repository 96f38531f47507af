"""benchmarks/thinking.py: the thinking arm's recipe, the figures it keeps and the table (no training)."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from agents.demo import RECIPES
from benchmarks.thinking import (
    COLUMNS,
    answer_lengths,
    chain_figures,
    comparison_table,
    grpo_figures,
    import_learning_run,
    paired_differences,
    plot_comparison,
    thinking_recipe,
)

ROOT = Path(__file__).resolve().parents[2]


class CharTokenizer:
    """One token per character: lengths a test can count by hand."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}


class WordTokenizer:
    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": text.split()}


def test_thinking_recipe_changes_only_the_reasoning_the_oracle_and_the_answer_room():
    recipe = RECIPES["counting"]
    think = thinking_recipe(recipe, CharTokenizer())
    # the longest oracle answer, four objects of 8 letters:
    # "<think>triangle, triangle, triangle, triangle.</think><answer>4</answer>" = 72 characters
    assert think.max_new_tokens == 72 + 2
    assert think.env_kwargs == {**recipe.env_kwargs, "reasoning": "think", "oracle_thinking": "scene"}
    same = dataclasses.replace(think, env_kwargs=recipe.env_kwargs, max_new_tokens=recipe.max_new_tokens)
    assert same == recipe  # band, steps, rates, seeds' data: all the recipe's


def test_answer_lengths_by_hand(tmp_path):
    path = tmp_path / "predictions.jsonl"
    answers = ["<think>a b c</think><answer>3</answer>", "2"]
    path.write_text("".join(json.dumps({"answer": a}) + "\n" for a in answers))
    assert answer_lengths(path, WordTokenizer()) == {
        "answer_tokens": (3 + 1) / 2,  # "<think>a", "b", "c</think><answer>3</answer>"; "2"
        "answer_chars": (38 + 1) / 2,
        "think_tokens": (3 + 0) / 2,  # "a b c"; no think block
        "think_chars": (5 + 0) / 2,
    }
    path.write_text("")
    with pytest.raises(ValueError, match="no predictions"):
        answer_lengths(path, WordTokenizer())


def test_grpo_figures_by_hand():
    history = [{"completions/mean_length": float(n)} for n in range(1, 11)]
    history.append({"eval/accuracy": 1.0})  # a row without a step's rollouts is not a step
    result = {"history": history, "grpo_cpu_s": 5.0, "reward_windows": [{"zero_std": 0.2}, {"zero_std": 0.4}]}
    assert grpo_figures(result) == {
        "grpo_steps": 10,
        "cpu_s_per_step": 0.5,
        "completion_tokens": 5.5,
        "completion_tokens_first": 1.0,
        "completion_tokens_last": 10.0,
        "zero_std": pytest.approx(0.3),
        "zero_std_last": 0.4,
    }


def _run(arm: str, seed: int, after: list[float]) -> dict:
    """A saved run with two test images of two scenes (counts 1 and 2) and the figures the table reads."""
    lengths = {"answer_tokens": 2.0, "answer_chars": 3.0, "think_tokens": 0.0, "think_chars": 0.0}
    if arm == "think":
        lengths = {"answer_tokens": 20.0, "answer_chars": 50.0, "think_tokens": 8.0, "think_chars": 20.0}
    return {
        "task": "counting",
        "seed": seed,
        "arm": arm,
        "metric_label": "accuracy",
        "higher_is_better": True,
        "max_new_tokens": 4 if arm == "none" else 32,
        "sft_steps": 200,
        "per_sample": {"scene": ["a", "b"], "stratum": [1, 2], "before": [0.0, 1.0], "after": after},
        "lengths": {"before": lengths, "after": lengths},
        "completion_tokens_first": 5.0,
        "completion_tokens_last": 4.0,
        "cpu_s_per_step": 0.1 if arm == "none" else 0.3,
        "zero_std": 0.25,
        "curve": [[0, 0.0, 0.0, 0.5], [100, 10.0, 12.0, after[0]]],
        "eval_samples": 2,
        "distinct_scenes": {"test": 2},
    }


def test_paired_differences_are_think_minus_none_in_points():
    none = [_run("none", s, [1.0, 1.0]) for s in range(3)]
    think = [_run("think", s, [0.0, 1.0]) for s in range(3)]
    diff = paired_differences(none, think, replicates=200)
    after = diff["after"]
    assert (after.point, after.low, after.high) == (-50.0, -50.0, -50.0)  # every seed: one scene of two lost
    assert diff["before"].point == 0.0 and diff["gain"].point == -50.0  # same warm-start scores
    with pytest.raises(ValueError, match="same seeds"):
        paired_differences(none, think[:2], replicates=200)


def _save(out: Path, runs: list[dict]) -> None:
    for run in runs:
        (out / run["arm"]).mkdir(parents=True, exist_ok=True)
        (out / run["arm"] / f"counting-seed{run['seed']}.json").write_text(json.dumps(run))


def test_table_has_a_row_per_arm_and_the_difference(tmp_path):
    _save(tmp_path, [_run("none", s, [1.0, 1.0]) for s in range(3)])
    _save(tmp_path, [_run("think", s, [0.0, 1.0]) for s in range(3)])
    lines = comparison_table(tmp_path, "counting", replicates=200).splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    none, think, diff = (line.split(" | ") for line in lines[2:])
    assert none[:7] == ["| none", "0 1 2", "4", "200", "50.0 [50.0, 50.0]", "100.0 [100.0, 100.0]",
                        "+50.0 [+50.0, +50.0]"]  # fmt: skip
    assert think[5] == "50.0 [50.0, 50.0]" and think[6] == "+0.0 [+0.0, +0.0]"
    assert think[7] == "20.0 [20.0, 20.0] / 50.0 [50.0, 50.0]"  # answer tokens / chars
    assert think[8] == "8.0 [8.0, 8.0] / 20.0 [20.0, 20.0]"  # think tokens / chars
    assert none[10] == "0.100 [0.100, 0.100]" and think[10] == "0.300 [0.300, 0.300]"
    assert diff[:7] == ["| think - none", "same", "-", "-", "+0.0 [+0.0, +0.0]", "-50.0 [-50.0, -50.0]",
                        "-50.0 [-50.0, -50.0]"]  # fmt: skip
    assert "x3.00 [3.00, 3.00]" in diff[10]


def test_script_prints_the_table_of_saved_runs_and_says_what_is_missing(tmp_path):
    """As a user runs it: ``benchmarks/thinking.py --table-only`` with one arm not run yet."""
    _save(tmp_path, [_run("none", s, [1.0, 0.0]) for s in range(3)])
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "thinking.py"),
        "--table-only",
        "--out",
        str(tmp_path),
        "--figures",
        str(tmp_path / "figures"),
    ]
    printed = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout
    assert "| none | 0 1 2 | 4 |" in printed
    assert "| think | not run |" in printed and "think - none" not in printed
    assert (tmp_path / "figures" / "thinking-counting.png").is_file()


def test_the_curves_of_both_arms_make_one_png(tmp_path):
    _save(tmp_path, [_run(arm, s, [1.0, 1.0]) for arm in ("none", "think") for s in range(2)])
    path = plot_comparison(tmp_path, "counting", folder=tmp_path / "figures")
    assert path == tmp_path / "figures" / "thinking-counting.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400
    with pytest.raises(ValueError, match="no runs of grounding"):
        plot_comparison(tmp_path, "grounding", folder=tmp_path)


def test_a_saved_learning_run_becomes_the_no_thinking_arm(tmp_path):
    """benchmarks/learning.py keeps no per-step history: GRPO's completion lengths come back from the
    run's TensorBoard log (a step logged twice, as after a resume, counts once: its last value)."""
    from torch.utils.tensorboard import SummaryWriter

    from agents.policies.tiny_model import build_tokenizer

    run = tmp_path / "learning" / "counting-seed0"
    build_tokenizer().save_pretrained(run / "tiny-model-seed0")
    writer = SummaryWriter(str(run / "grpo-seed0"))
    for step, length in ((1, 9.0), (1, 2.0), (2, 4.0)):
        writer.add_scalar("completions/mean_length", length, step)
    writer.close()
    for when, answers in (("before", ["3", "12"]), ("after", ["3", "4"])):
        (run / f"eval-{when}").mkdir()
        rows = "".join(json.dumps({"answer": a}) + "\n" for a in answers)
        (run / f"eval-{when}" / "predictions.jsonl").write_text(rows)
    saved = {**_run("none", 0, [1.0, 1.0]), "grpo_cpu_s": 1.0, "run_dir": str(run / "grpo-seed0")}
    saved["reward_windows"] = [{"zero_std": 0.5}]
    for key in ("arm", "lengths", "max_new_tokens", "cpu_s_per_step", "zero_std"):
        saved.pop(key)
    (tmp_path / "learning" / "counting-seed0.json").write_text(json.dumps(saved))

    result = import_learning_run(tmp_path / "learning" / "counting-seed0.json", tmp_path / "think")
    assert result["arm"] == "none" and result["max_new_tokens"] == RECIPES["counting"].max_new_tokens
    assert (result["grpo_steps"], result["completion_tokens"], result["cpu_s_per_step"]) == (2, 3.0, 0.5)
    assert result["lengths"]["before"]["answer_chars"] == 1.5  # "3" and "12"
    assert result["lengths"]["after"]["think_chars"] == 0.0
    assert json.loads((tmp_path / "think" / "none" / "counting-seed0.json").read_text()) == result
    (run / "grpo-seed0").rename(run / "elsewhere")
    with pytest.raises(ValueError, match="no completions/mean_length"):
        import_learning_run(tmp_path / "learning" / "counting-seed0.json", tmp_path / "think")


def test_chain_figures_by_hand(tmp_path):
    two = {"labels": ["square", "circle"], "boxes": [[60, 0, 80, 20], [0, 0, 20, 20]]}  # circle left
    empty = {"labels": [], "boxes": []}
    rows = [
        ("<think>circle, square.</think><answer>2</answer>", two),  # the scene, counted: both
        ("<think>circle.</think><answer>2</answer>", two),  # one object named, two answered: neither
        ("<think>no objects.</think><answer>0</answer>", empty),  # both
        ("3", empty),  # no chain at all: neither
    ]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps({"answer": a, "target": t}) + "\n" for a, t in rows))
    assert chain_figures(path) == {"scene": 0.5, "count": 0.5}
