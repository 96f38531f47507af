"""``perception-r1 eval`` end to end: reference agents on every built-in env, and a tiny model."""

import json
from pathlib import Path

import gymnasium as gym
import pytest

import perception_env
from agents.evaluate import main
from perception_env.evaluation import REFERENCE_AGENTS, run_evaluation, task_metrics

HEADLINE = {  # the paper's metric per task, and the oracle's value
    "PerceptionR1/Detection-v0": ("AP", 1.0),
    "PerceptionR1/Grounding-v0": ("acc@0.5", 1.0),
    "PerceptionR1/Counting-v0": ("accuracy", 1.0),
    "PerceptionR1/OCR-v0": ("f1", 1.0),
}


@pytest.mark.parametrize("env_id", sorted(perception_env.ENV_IDS))
def test_cli_oracle_on_built_in_data(env_id, tmp_path, capsys):
    out = tmp_path / "run"
    main(
        [
            "eval", "--env", env_id, "--agent", "oracle", "--limit", "6", "--output", str(out), "--quiet",
            "--env-kwargs", '{"difficulty": "easy"}',
        ]
    )  # fmt: skip
    run = json.loads((out / "metrics.json").read_text())
    key, value = HEADLINE[env_id]
    assert run["metrics"][key] == pytest.approx(value)
    assert run["metrics"]["n"] == 6 and run["metrics"]["success"] == 1.0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 6
    first = json.loads(lines[0])
    assert {"sample_id", "prompt", "answer", "reward", "is_success", "parsed"} <= set(first)
    printed = capsys.readouterr().out
    assert (out / "table.md").read_text().split("\n\n")[1] in printed  # the same table is printed
    if env_id.endswith("OCR-v0"):
        assert run["metrics"]["edit_distance"] == 0.0


@pytest.mark.parametrize("agent", ["empty", "random"])
def test_cli_floor_agents(agent, tmp_path):
    out = tmp_path / agent
    main(
        [
            "eval", "--env", "PerceptionR1/Detection-v0", "--agent", agent, "--limit", "4",
            "--output", str(out), "--quiet",
        ]
    )  # fmt: skip
    run = json.loads((out / "metrics.json").read_text())
    assert run["metrics"]["AP"] == 0.0
    assert run["agent_kind"] == agent


def test_task_metrics_from_env_step_infos():
    """What a trainer's periodic evaluation has (env step infos) gives the same metrics as the runner."""
    env = gym.make("PerceptionR1/Grounding-v0", split="test", difficulty="easy")
    infos, samples = [], []
    for i in range(5):
        env.reset(options={"index": i})
        infos.append(env.step(env.unwrapped.oracle_answer())[4])
        samples.append(env.unwrapped.sample)
    from_infos = task_metrics("grounding", infos, samples)
    from_runner = run_evaluation(env, REFERENCE_AGENTS["oracle"](), limit=5).metrics
    assert from_infos["acc@0.5"] == from_runner["acc@0.5"] == 1.0
    assert from_infos["mean_iou"] == pytest.approx(
        from_runner["mean_iou"], abs=1e-3
    )  # infos round to 0.01 px


def test_cli_tiny_model(tiny_model_dir, one_torch_thread, tmp_path):
    out = tmp_path / "tiny"
    main(
        [
            "eval", "--env", "PerceptionR1/Counting-v0", "--model", tiny_model_dir, "--limit", "3",
            "--batch-size", "2", "--max-new-tokens", "6", "--output", str(out), "--quiet",
            "--env-kwargs", '{"difficulty": "easy"}',
        ]
    )  # fmt: skip
    run = json.loads((out / "metrics.json").read_text())
    assert (
        run["agent_kind"] == "model"
        and run["agent"] == Path(tiny_model_dir).name
        and run["metrics"]["n"] == 3
    )
    assert 0.0 <= run["metrics"]["accuracy"] <= 1.0
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3


def test_cli_needs_a_model_or_an_agent():
    with pytest.raises(SystemExit):
        main(["eval", "--env", "PerceptionR1/Counting-v0"])


def test_benchmark_label_names_the_split_once():
    from agents.evaluate import benchmark_label

    assert benchmark_label("coco", "val") == "coco val"
    assert benchmark_label("refcoco-testA", "testA") == "refcoco-testA"
    assert (
        benchmark_label("refcoco-testA", "testa") == "refcoco-testA"
    )  # loaders read split names in any case
