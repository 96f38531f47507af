"""benchmarks/algorithms.py: each --algorithms name is the documented set of options (no training)."""

import dataclasses
import json
from pathlib import Path

import pytest

from agents.config import SetupError
from agents.demo import RECIPES
from agents.grpo.config import GRPOConfig
from agents.rloo.config import RLOOConfig
from benchmarks.algorithms import (
    ALL,
    GDPO_REWARD_WEIGHTS,
    VARIANTS,
    figures,
    first_reach,
    load_runs,
    resolve,
    step_series,
    table,
    variant_config,
)


def _config(name: str, task: str = "counting"):
    return variant_config(name, task, RECIPES[task], "warm", Path("out"), 0)


# name -> (config class, the fields it must set, as documented in docs/grpo-variants.md and each source)
EXPECTED = {
    "grpo": (GRPOConfig, {"loss_type": "grpo", "scale_rewards": "group", "epsilon_high": 0.2, "filter_groups": False}),
    "dapo": (GRPOConfig, {"loss_type": "dapo", "epsilon_low": 0.2, "epsilon_high": 0.28, "filter_groups": True}),
    "dr_grpo": (GRPOConfig, {"loss_type": "dr_grpo", "scale_rewards": "none", "filter_groups": False}),
    "gspo": (GRPOConfig, {"importance_sampling_level": "sequence", "epsilon_low": 3e-4, "epsilon_high": 4e-4}),
    "cispo": (GRPOConfig, {"loss_type": "cispo", "epsilon_high": 5.0}),
    "rloo": (RLOOConfig, {"loss_type": "sequence", "normalize_advantages": False}),
    "gdpo": (GRPOConfig, {"multi_objective_aggregation": "normalize_then_sum", "reward_weights": {"exact": 1.0}}),
    "grpo+ds": (GRPOConfig, {"loss_type": "grpo", "epsilon_high": 0.2, "filter_groups": True}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_sets_its_documented_options_over_the_recipe(name):
    config_class, fields = EXPECTED[name]
    config = _config(name)
    assert type(config) is config_class
    assert {k: getattr(config, k) for k in fields} == fields
    # the recipe's own settings stay: every variant of a seed trains as many steps at the same rate
    recipe = RECIPES["counting"]
    assert (config.total_steps, config.learning_rate, config.beta) == (
        recipe.grpo_steps,
        recipe.grpo_learning_rate,
        recipe.grpo_beta,
    )
    assert (config.seed, config.model, config.run_name) == (0, "warm", name)


def test_every_variant_is_tested_and_names_its_source():
    assert set(EXPECTED) == set(VARIANTS) == set(ALL)
    assert all(v.source and v.label for v in VARIANTS.values())


def test_rloo_takes_every_shared_training_option_of_the_recipe():
    grpo, rloo = _config("grpo"), _config("rloo")
    shared = {f.name for f in dataclasses.fields(RLOOConfig)} & {
        f.name for f in dataclasses.fields(GRPOConfig)
    }
    differing = {
        k for k in shared if k not in ("loss_type", "run_name") and getattr(grpo, k) != getattr(rloo, k)
    }
    assert differing == set()


@pytest.mark.parametrize("task", sorted(GDPO_REWARD_WEIGHTS))
def test_gdpo_weights_sum_the_envs_reward_terms_to_the_envs_reward(task):
    """GDPO's objective stays the task's: the weighted components add up to the env's reward, for the oracle's
    answer and for wrong ones."""
    if task not in RECIPES:
        pytest.skip(f"no demo recipe for {task}")
    env = RECIPES[task].make_env("test", size=4)
    weights = GDPO_REWARD_WEIGHTS[task]
    u = env.unwrapped
    for index in range(4):
        env.reset(options={"index": index})
        for answer in (u.oracle_answer(), "7", "nothing"):
            scored = u.score(answer)
            components = scored.info["reward_components"]
            assert sum(w * components[k] for k, w in weights.items()) == pytest.approx(
                scored.reward, abs=1e-9
            )


def test_gdpo_on_a_task_without_weights_is_a_setup_error():
    with pytest.raises(SetupError, match="gdpo needs task options for ocr"):
        _config("gdpo", "ocr")


def test_names_resolve_and_an_unknown_one_is_named():
    assert resolve(["all"]) == list(ALL)
    assert resolve(["dapo", "grpo"]) == ["dapo", "grpo"]
    with pytest.raises(ValueError, match=r"unknown algorithm\(s\) \['ppo'\]; known: grpo, dapo"):
        resolve(["grpo", "ppo"])


def test_zero_variance_counts_generated_groups_with_dynamic_sampling():
    plain = {
        "train/frac_reward_zero_std": 0.25,
        "train/entropy": 0.5,
        "reward/mean": 0.6,
        "completions/mean_length": 2.0,
    }
    # 8 groups wanted; 2 generation batches (16 groups), 6 of them unanimous and dropped
    filtered = {
        "train/frac_reward_zero_std": 0.0,
        "train/entropy": 0.4,
        "reward/mean": 0.5,
        "dynamic_sampling/groups_dropped": 6.0,
        "dynamic_sampling/extra_rounds": 1.0,
        "dynamic_sampling/rollouts_total": 128.0,
    }
    assert step_series([plain, plain], 64, 8) == {
        "zero_var": [0.25, 0.25],
        "entropy": [0.5, 0.5],
        "reward": [0.6, 0.6],
        "length": [2.0, 2.0],
        "rollouts": [64, 128],
    }
    assert step_series([filtered], 64, 8)["zero_var"] == [6 / 16]
    assert step_series([filtered], 64, 8)["rollouts"] == [128]


def _saved(task: str, seed: int, name: str, after: float, stopped=None) -> dict:
    return {"task": task, "seed": seed, "algorithm": name, "metric_label": "accuracy", "eval_samples": 200,
            "before": 0.4, "after": after, "gain": 100 * (after - 0.4), "grpo_cpu_s": 50.0 + seed,
            "stopped": stopped, "curve": [[0, 0.0, 0.0, 0.4], [25, 2.0, 3.0, after]],
            "zero_var": [0.5] * 9 + [1.0], "entropy": [0.3] * 10, "reward": [0.5] * 10, "length": [2.0] * 10,
            "rollouts": [64 * (k + 1) for k in range(10)]}  # fmt: skip


def test_table_has_a_row_per_variant_with_seed_values_and_tail_means(tmp_path):
    for seed, after in ((0, 1.0), (1, 0.5)):
        path = tmp_path / f"counting-seed{seed}-grpo.json"
        path.write_text(json.dumps(_saved("counting", seed, "grpo", after)))
    stopped = {"step": 7, "reason": "too many"}
    (tmp_path / "counting-seed0-dapo.json").write_text(
        json.dumps(_saved("counting", 0, "dapo", 0.9, stopped))
    )
    runs = load_runs(tmp_path)
    rows = table(runs, "counting").splitlines()[2:]
    assert (
        rows[0]
        == "| GRPO (paper) | 75.0 (100.0 / 50.0) | +35.0 | 2 / never | 50 | 640 | 55% / 100% | 0.300 | 2.00 |"
    )
    assert rows[1].startswith("| DAPO | 90.0 (90.0); seed 0 stopped at step 7 | +50.0 | never | 50 |")
    paths = figures(runs, "counting", tmp_path / "figures")
    assert [p.name for p in paths] == [
        "algorithms-counting.png",
        "algorithms-counting-zero-var.png",
        "algorithms-counting-entropy.png",
        "algorithms-counting-length.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
    # a sweep with two updates per batch draws beside these figures, not over them; mixed sweeps are refused
    mu2 = [{**r, "options": {"num_iterations": 2}} for r in runs]
    assert [p.name for p in figures(mu2, "counting", tmp_path / "figures")] == [
        "algorithms-counting-mu2.png",
        "algorithms-counting-mu2-zero-var.png",
        "algorithms-counting-mu2-entropy.png",
        "algorithms-counting-mu2-length.png",
    ]
    with pytest.raises(ValueError, match=r"different updates per batch \(\[1, 2\]\)"):
        figures(runs + mu2, "counting", tmp_path / "figures")


def test_a_run_is_timed_to_its_first_evaluation_at_95_percent():
    curve = [[0, 0.0, 0.0, 0.4], [25, 2.5, 9.0, 0.94], [50, 5.0, 18.0, 0.95], [75, 7.5, 27.0, 1.0]]
    assert first_reach({"curve": curve}) == 5.0
    assert first_reach({"curve": curve[:2]}) is None
    assert (
        first_reach({"curve": curve, "higher_is_better": False}) is None
    )  # an error rate: no level to reach


def test_learning_benchmark_flag_runs_the_named_variants_tables_and_figures(tmp_path, monkeypatch, capsys):
    """``benchmarks/learning.py --algorithms ... --plot-only``: the table and the three PNGs of the saved
    runs of the named variants only."""
    from benchmarks import algorithms, learning

    for name, after in (("grpo", 1.0), ("dapo", 0.9), ("rloo", 0.5)):
        (tmp_path / f"counting-seed0-{name}.json").write_text(json.dumps(_saved("counting", 0, name, after)))
    (tmp_path / "grounding-seed0-grpo.json").write_text(json.dumps(_saved("grounding", 0, "grpo", 0.8)))
    monkeypatch.setattr(algorithms, "FIGURES", tmp_path / "figures")
    argv = [
        "learning.py",
        "--tasks",
        "counting",
        "--algorithms",
        "grpo",
        "dapo",
        "--out",
        str(tmp_path),
        "--plot-only",
    ]
    monkeypatch.setattr("sys.argv", argv)
    learning.main()
    printed = capsys.readouterr().out
    assert "| GRPO (paper) | 100.0 (100.0) |" in printed and "| DAPO | 90.0 (90.0) |" in printed
    assert "RLOO" not in printed and "grounding" not in printed  # the named variants and tasks only
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "algorithms-counting-entropy.png",
        "algorithms-counting-length.png",
        "algorithms-counting-zero-var.png",
        "algorithms-counting.png",
    ]
    args = learning.argument_parser().parse_args(["--algorithms", "all"])
    assert (args.algorithms, args.warm_starts) == (["all"], "runs/learning")


def test_learning_benchmark_flag_names_an_unknown_variant(tmp_path, monkeypatch):
    from benchmarks import learning

    monkeypatch.setattr(
        "sys.argv", ["learning.py", "--algorithms", "ppo", "--out", str(tmp_path), "--plot-only"]
    )
    with pytest.raises(ValueError, match="unknown algorithm"):
        learning.main()


def test_a_missing_warm_start_is_made_by_the_plain_run_then_each_variant_trains_once(tmp_path, monkeypatch):
    """Without --plot-only: the seed's plain demo run (no control) is made in --warm-starts when its warm start
    is missing, every named variant then trains from it once, and a saved variant is not trained again."""
    from benchmarks import algorithms, learning

    warm_root, out = tmp_path / "warm", tmp_path / "out"
    calls = []

    def fake_plain_run(task, seed, where, eval_every, control_eval_every, control=True):
        calls.append(("plain", task, seed, where, control))
        algorithms.warm_start_dir(where, task, seed).mkdir(parents=True)

    def fake_variant(task, seed, name, warm, into, eval_every, common=None):
        calls.append(("variant", task, seed, name, eval_every))
        r = _saved(task, seed, name, 1.0)
        into.mkdir(parents=True, exist_ok=True)
        (into / f"{task}-seed{seed}-{name}.json").write_text(json.dumps(r))
        return {**r, "stopped": None}

    monkeypatch.setattr(learning, "run", fake_plain_run)
    monkeypatch.setattr(learning, "quiet_single_thread_torch", lambda: None)
    monkeypatch.setattr(algorithms, "run_variant", fake_variant)
    monkeypatch.setattr(algorithms, "FIGURES", tmp_path / "figures")
    argv = ["learning.py", "--tasks", "counting", "--seeds", "3", "--algorithms", "grpo", "dapo"]
    argv += ["--warm-starts", str(warm_root), "--out", str(out), "--eval-every", "50"]
    monkeypatch.setattr("sys.argv", argv)
    learning.main()
    learning.main()  # everything saved: nothing runs again
    assert calls == [
        ("plain", "counting", 3, warm_root, False),
        ("variant", "counting", 3, "grpo", 50),
        ("variant", "counting", 3, "dapo", 50),
    ]


def test_num_iterations_reaches_every_variant_and_a_variant_without_it_is_refused_before_any_run(
    tmp_path, monkeypatch
):
    """`--num-iterations 2` (several updates per batch, where the clipped variants differ): every variant's
    config gets num_iterations 2 over the recipe's 1 and keeps its own options; RLOO, whose agent trains once
    per batch, is refused with a one-line reason before anything trains."""
    from benchmarks import algorithms, learning

    for name in ("grpo", "dapo", "gspo", "cispo"):
        config = variant_config(
            name, "counting", RECIPES["counting"], "warm", Path("out"), 0, {"num_iterations": 2}
        )
        assert config.num_iterations == 2 and _config(name).num_iterations == 1
        assert {k: getattr(config, k) for k in EXPECTED[name][1]} == EXPECTED[name][1]

    with pytest.raises(SystemExit):  # argparse's one-line error, before any warm start is made
        learning.argument_parser().parse_args(["--algorithms", "grpo", "--num-iterations", "0"])

    calls = []
    monkeypatch.setattr(learning, "quiet_single_thread_torch", lambda: None)
    monkeypatch.setattr(algorithms, "run_variant", lambda *a: calls.append(a))
    argv = ["learning.py", "--tasks", "counting", "--seeds", "0", "--algorithms", "grpo", "rloo"]
    argv += ["--warm-starts", str(tmp_path), "--out", str(tmp_path / "out"), "--num-iterations", "2"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SetupError, match=r"rloo \(rloo agent\) has no option num_iterations"):
        learning.main()
    assert calls == []
