"""The demo's plumbing on a miniature recipe (the learning itself is measured in benchmarks/learning.py)."""

import dataclasses

from agents.demo import RECIPES, per_class_accuracy, run_demo


MINIATURE = dataclasses.replace(RECIPES["counting"], sft_target=1.01, sft_max_steps=2, sft_chunk=1,
                                sft_check_samples=4, grpo_steps=2, prompts_per_step=2, group_size=2,
                                eval_samples=6)


def test_demo_runs_end_to_end_and_reports(tmp_path, capsys):
    recipe = MINIATURE
    result = run_demo(tmp_path, seed=0, recipe=recipe, progress=False, eval_every=1)
    out = capsys.readouterr().out
    assert result["sft_steps"] == 2  # the unreachable target stops at sft_max_steps
    assert 0.0 <= result["before"] <= 1.0 and 0.0 <= result["after"] <= 1.0
    assert [step for step, _ in result["curve"]] == [0, 1, 2]
    assert "held-out accuracy" in out and "true count" in out and "TensorBoard" in out
    assert (tmp_path / "grpo-seed0" / "checkpoints").is_dir()


def test_per_class_accuracy():
    infos = [{"is_success": True, "k": 1}, {"is_success": False, "k": 1}, {"is_success": True, "k": 2}]
    assert per_class_accuracy(infos, lambda i: i["k"]) == {1: (1, 2), 2: (1, 1)}


def test_same_seed_same_figures(tmp_path):
    """The README promises the same before -> after on every run with the same seed."""
    first, second = (run_demo(tmp_path / name, seed=3, recipe=MINIATURE, progress=False) for name in "ab")
    assert (first["before"], first["after"], first["sft_steps"]) == (second["before"], second["after"], second["sft_steps"])
    for a, b in zip(first["history"], second["history"]):
        assert a["reward/mean"] == b["reward/mean"] and a["train/loss"] == b["train/loss"]
