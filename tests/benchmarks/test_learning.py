"""benchmarks/learning.py: the table and the curves from saved runs (no training)."""

import dataclasses
import json
import re
from collections.abc import Callable

import gymnasium as gym
import pytest
from PIL import Image

from agents.demo import RECIPES, metric_value, per_sample_metric, run_demo
from benchmarks.intervals import Interval
from benchmarks.learning import (
    SUMMARY_COLUMNS,
    argument_parser,
    curve_band,
    difference_table,
    learning_figure,
    load_runs,
    plot,
    summary_table,
    table,
    task_intervals,
    variant_recipe,
)
from perception_env.evaluation.runner import run_evaluation


def _run(task: str, seed: int, control: bool = True) -> dict:
    run = {"task": task, "seed": seed, "metric_label": "Acc@0.5", "sft_steps": 475, "before": 0.54,
           "after": 0.865, "gain": 32.5, "grpo_cpu_s": 83.2,
           "curve": [[0, 0.0, 0.0, 0.54], [25, 7.5, 9.0, 0.68], [300, 83.2, 99.0, 0.865]]}  # fmt: skip
    if control:
        run["control"] = {"after": 1.0, "gain": 46.0, "steps": 1000, "cpu_s": 92.4,
                          "curve": [[0, 0.0, 0.0, None], [1000, 92.4, 110.0, 1.0]]}  # fmt: skip
    return run


def test_saved_runs_make_one_table_row_each_with_grpo_and_the_control(tmp_path):
    for seed, control in ((0, True), (1, False)):
        (tmp_path / f"grounding-seed{seed}.json").write_text(json.dumps(_run("grounding", seed, control)))
    runs = load_runs(tmp_path)
    rows = table(runs).splitlines()[2:]
    assert [r["seed"] for r in runs] == [0, 1] and len(rows) == 2
    assert "|  54.0 |  86.5 (+32.5) | 83 | 100.0 (+46.0) | 1000 | 92 |" in rows[0]
    assert rows[1].endswith("|  86.5 (+32.5) | 83 | not measured | - | - |")  # no control: said, not invented


def test_the_curve_png_is_written_per_task(tmp_path):
    path = plot([_run("grounding", 0), _run("grounding", 2)], "grounding", tmp_path)
    assert path.name == "learning-grounding.png" and Image.open(path).size == (900, 540)


def _per_sample_run(seed: int, before: list[int], after: list[int], control: list[int]) -> dict:
    """A counting run on 4 test images of 3 scenes (a, a, b, c) with its per-sample hits."""
    run = _run("counting", seed)
    run.update(
        metric_label="accuracy",
        eval_samples=4,
        val_samples=100,
        distinct_scenes={"test": 3, "val": 68},
        per_sample={"scene": ["a", "a", "b", "c"], "before": before, "after": after},
    )
    run["control"]["per_sample_after"] = control
    return run


def test_the_summary_row_gives_iqm_and_intervals_over_seeds_and_scenes():
    # every seed: before hits scene b only (1/3 of scenes), after every scene, the control scenes a and b
    runs = [_per_sample_run(seed, [0, 0, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]) for seed in range(5)]
    lines = summary_table(runs).splitlines()
    assert lines[0] == "| " + " | ".join(SUMMARY_COLUMNS) + " |" and len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    row = dict(zip(SUMMARY_COLUMNS, cells))
    assert row["seeds"] == "0 1 2 3 4"
    assert (
        row["test images (distinct scenes)"] == "4 (3)"
        and row["validation images (distinct scenes)"] == "100 (68)"
    )
    # scenes weighted by their images (a: 2, b: 1, c: 1): before 1/4, after 1, control 3/4, as over images
    assert row["before"].startswith("25.0 [0.0, ") and row["GRPO after"] == "100.0 [100.0, 100.0]"
    assert row["GRPO gain"].startswith("+75.0 [+") and row["SFT control after"].startswith("75.0 [")
    assert row["GRPO - control"].startswith("+25.0 [+0.0, ")
    assert row["CPU s, GRPO / control"] == "83 / 92"


def test_intervals_are_the_same_on_every_call_and_reflect_seed_spread():
    runs = [_per_sample_run(seed, [0, 0, 1, 0], [1, 1, 1, seed % 2], [1, 1, 1, 0]) for seed in range(5)]
    first = task_intervals(runs)
    assert first == task_intervals(runs)
    assert first["after"].low < first["after"].point <= first["after"].high == 100.0
    # with a class per image, scenes are drawn within it: each scene its own class leaves only the seeds
    for run in runs:
        run["per_sample"]["stratum"] = ["a", "a", "b", "c"]
    assert task_intervals(runs)["before"] == Interval(25.0, 25.0, 25.0)  # every seed: the same before


def test_runs_saved_without_per_sample_results_say_so():
    row = summary_table([_run("grounding", 0), _run("grounding", 1)]).splitlines()[2]
    assert "no per-sample results" in row and "not recorded" in row


def _evaluated(recipe, answer_right: Callable[[int], bool], n: int = 6) -> tuple[dict, gym.Env]:
    """``recipe``'s test env evaluated on ``n`` images: the oracle's answer where ``answer_right(i)``,
    else a malformed one; as the demo's evaluate() returns it (``records`` in index order)."""
    env, oracle = recipe.make_env("test", n), recipe.make_env("test", n)

    def answer(_env, indices, _observations):
        texts = []
        for i in indices:
            oracle.reset(options={"index": i})
            texts.append(oracle.unwrapped.oracle_answer() if answer_right(i) else "no idea")
        return texts

    result = run_evaluation(env, answer)
    return {"records": result.records, "metrics": result.metrics}, env


@pytest.mark.parametrize("task", ["counting", "detection", "ocr"])
def test_the_demo_s_per_sample_metric_scores_each_image_alone(task):
    recipe = RECIPES[task]
    result, env = _evaluated(recipe, lambda i: i % 2 == 0)
    scores = per_sample_metric(result, env, recipe)
    assert len(scores) == 6
    if recipe.higher_is_better:  # a miss or a malformed answer scores 0; the oracle's box AP >= 0.85
        assert scores[1::2] == [0.0] * 3 and all(s >= 0.85 for s in scores[::2])
    else:  # "no idea" read for a word of 1-4 letters: mostly edits; the oracle's text: none
        assert all(s > 0.5 for s in scores[1::2]) and scores[::2] == [0.0] * 3
    if task != "detection":  # a per-sample mean: the images' mean is the metric (AP is not: a proxy)
        assert sum(scores) / 6 == pytest.approx(metric_value(result, recipe))


def test_a_demo_run_saves_each_test_image_s_scene_and_metric(tmp_path):
    miniature = dataclasses.replace(
        RECIPES["counting"], sft_band=(1.01, 1.01), sft_max_steps=1, sft_chunk=1, sft_check_samples=4,
        grpo_steps=1, prompts_per_step=2, group_size=2, eval_samples=6, control_sft_steps=1,
    )  # fmt: skip
    result = run_demo(tmp_path, seed=0, recipe=miniature, progress=False, control=True)
    per_sample = result["per_sample"]
    assert result["eval_samples"] == 6 and result["val_samples"] == 4
    assert len(per_sample["scene"]) == len(per_sample["before"]) == len(per_sample["after"]) == 6
    assert result["distinct_scenes"]["test"] == len(set(per_sample["scene"]))
    test = miniature.make_env("test").unwrapped.dataset
    assert per_sample["stratum"] == [test[i].count for i in range(6)]  # counting's class: the true count
    assert sum(per_sample["after"]) / 6 == pytest.approx(result["after"])
    assert sum(result["control"]["per_sample_after"]) / 6 == pytest.approx(result["control"]["after"])


def test_the_curve_band_is_the_interval_over_seeds_at_each_evaluation():
    same = [[(0.0, 40.0), (10.0, 90.0)], [(0.0, 40.0), (12.0, 90.0)], [(0.0, 40.0), (14.0, 90.0)]]
    assert curve_band(same) == [(0.0, 40.0, 40.0), (12.0, 90.0, 90.0)]  # equal seeds: zero width, median x
    spread = curve_band([[(0.0, 0.0)], [(0.0, 50.0)], [(0.0, 100.0)]])
    assert spread[0][1] == 0.0 and spread[0][2] == 100.0  # a draw of three times one seed is possible
    assert curve_band(same[:2]) == [] and curve_band([same[0], same[1], same[2][:1]]) == []


def test_with_three_seeds_the_figure_shades_each_method_s_band():
    bands = lambda runs: learning_figure(runs, "grounding").axes[0].collections  # noqa: E731
    assert len(bands([_run("grounding", seed) for seed in range(3)])) == 2  # GRPO's and the control's
    assert len(bands([_run("grounding", seed) for seed in range(2)])) == 0  # two seeds: no band


def test_target_order_option_replaces_only_the_recipe_s_order():
    args = argument_parser().parse_args(["--tasks", "counting-points", "--target-order", "sorted"])
    recipe, variant = variant_recipe("counting-points", args.target_order, args.reward_matching)
    assert recipe.target_order == "sorted" and variant == "sorted targets"
    assert dataclasses.replace(recipe, target_order="random") == RECIPES["counting-points"]
    assert RECIPES["counting-points"].target_order == "random"  # the recipe itself untouched
    # the recipe's own settings, named or left out, are no variant
    assert variant_recipe("counting-points", "random", "hungarian") == (RECIPES["counting-points"], "")
    assert variant_recipe("counting-points") == (RECIPES["counting-points"], "")
    with pytest.raises(SystemExit):  # argparse's error, not a run with an order the warm start lacks
        argument_parser().parse_args(["--target-order", "diagonal"])


def test_listed_reward_matching_makes_the_env_score_points_in_their_listed_order():
    recipe, variant = variant_recipe("counting-points", reward_matching="listed")
    assert variant == "listed matching" and recipe.env_kwargs["reward_config"] == {"matching": "listed"}
    assert "reward_config" not in RECIPES["counting-points"].env_kwargs
    rewards = {}
    for name, r in (("hungarian", RECIPES["counting-points"]), ("listed", recipe)):
        env = r.make_env("test", 1)
        env.reset(options={"index": 0})
        head, points = env.unwrapped.oracle_answer().split("<|object_ref_end|>")
        reversed_points = ",".join(reversed(re.findall(r"\([^)]*\)", points)))
        env.reset(options={"index": 0})
        rewards[name] = env.step(f"{head}<|object_ref_end|>{reversed_points}")[1]
    # test image 0: four points; Hungarian pairs them back (the oracle's reward), the listed order does not
    assert rewards["hungarian"] > 0.99 and rewards["listed"] < 0.9


def test_a_variant_s_runs_are_named_in_the_tables_and_the_png(tmp_path):
    runs = [{**_per_sample_run(seed, [0, 0, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]), "variant": "sorted targets"}
            for seed in range(5)]  # fmt: skip
    assert table(runs).splitlines()[2].startswith("| counting (sorted targets) | accuracy | 0 |")
    summary = summary_table(runs).splitlines()
    assert len(summary) == 3 and summary[2].startswith("| counting (sorted targets) | accuracy | 0 1 2 3 4 |")
    assert plot(runs, "counting", tmp_path).name == "learning-counting-sorted-targets.png"


def test_every_demo_recipe_and_reward_matching_is_offered_and_the_default_tasks_are_recipes():
    from agents.demo.recipes import RECIPES
    from perception_env.rewards.matching import MATCHINGS

    parser = argument_parser()
    assert [parser.parse_args(["--tasks", task]).tasks for task in RECIPES] == [[task] for task in RECIPES]
    assert [parser.parse_args(["--reward-matching", m]).reward_matching for m in MATCHINGS] == list(MATCHINGS)
    assert set(parser.parse_args([]).tasks) <= set(RECIPES)  # argparse does not check a default


def test_runs_are_named_by_their_recipe_not_their_env_s_task(tmp_path):
    # counting-points runs the counting env, and the demo's result says "counting": a table or a PNG
    # under that name would mix its runs with counting's and replace learning-counting.png
    (tmp_path / "counting-points-seed0.json").write_text(json.dumps(_run("counting", 0)))
    runs = load_runs(tmp_path)
    assert [r["task"] for r in runs] == ["counting-points"]
    assert table(runs).splitlines()[2].startswith("| counting-points |")
    assert plot(runs, "counting-points", tmp_path).name == "learning-counting-points.png"


def test_two_variants_differ_paired_by_seed_and_test_image():
    # sorted order: before hits scenes a (2 images) and b; random order: scene b only; both end at 100%
    sorted_runs = [{**_per_sample_run(seed, [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]), "variant": "sorted targets"}
                   for seed in range(6)]  # fmt: skip
    random_runs = [_per_sample_run(seed, [0, 0, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]) for seed in range(5)]
    lines = difference_table(sorted_runs, random_runs).splitlines()
    assert len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:2] == ["counting (sorted targets) - counting", "0 1 2 3 4"]  # seed 5 has no pair
    # scene a's 2 of 4 images: +50 points on every seed; the after and the control: equal on every draw
    assert cells[2].startswith("+50.0 [+0.0, ") and cells[3:] == ["+0.0 [+0.0, +0.0]"] * 2


def test_a_long_title_is_wrapped_inside_the_figure():
    runs = [{**_run("counting-points", seed), "variant": "sorted targets"} for seed in range(3)]
    title = learning_figure(runs, "counting-points").axes[0].get_title()
    assert "\n" in title and title.startswith("counting-points (sorted targets): held-out Acc@0.5")
    assert "\n" not in learning_figure([_run("grounding", 0)], "grounding").axes[0].get_title()


@pytest.mark.parametrize(
    "argv",
    [["--eval-every", "0"], ["--control-eval-every", "0"], ["--seeds", "0", "-1"], ["--seeds", "x"]],
)
def test_counts_and_seeds_are_checked_before_anything_trains(argv, capsys):
    """A zero spacing or a negative seed is argparse's one-line error, not a failure after a warm start."""
    with pytest.raises(SystemExit):
        argument_parser().parse_args(argv)
    assert re.search(r"must be >= [01], got|expected an int, got 'x'", capsys.readouterr().err)
    assert argument_parser().parse_args(["--eval-every", "1", "--seeds", "0", "4"]).seeds == [0, 4]


def test_the_thinking_benchmark_checks_its_counts_too(monkeypatch, capsys):
    from benchmarks import thinking

    monkeypatch.setattr("sys.argv", ["thinking.py", "--eval-every", "0", "--table-only"])
    with pytest.raises(SystemExit):
        thinking.main()
    assert "argument --eval-every: must be >= 1, got 0" in capsys.readouterr().err
