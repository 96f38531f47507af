"""A task is one class: a fifth one, defined here and registered through the task list, gets gym.make,
the Gymnasium checks, scoring, the oracle, its metrics, ``perception-r1 eval`` and the report's table --
with nothing else in the package changed."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import perception_env
from perception_env import ENV_IDS, TASKS, PerceptionEnv, Sample, register_task
from perception_env.evaluation import REFERENCE_AGENTS, run_evaluation, task_metrics
from perception_env.rewards import RewardResult
from perception_env.rewards.result import read_answer
from perception_env.tasks import make_dataset

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class Colours:
    """The built-in data: images of one colour each, red, green, blue in turn; the truth is its name."""

    name = "colours"
    categories = ()

    def __init__(self, split: str = "train", difficulty: str = "medium", size: int = 12):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.size:
            raise IndexError(index)
        colour = list(COLOURS)[index % len(COLOURS)]
        image = np.full((8, 8, 3), COLOURS[colour], dtype=np.uint8)
        return Sample(sample_id=f"colours/{index}", width=8, height=8, image=image, text=colour)


def score_colour(answer, sample, fmt="text", frame=None, config=None) -> RewardResult:
    """1 for the colour's name (any case and spacing), else 0."""
    fmt, parsed = read_answer(answer, sample, fmt, frame)
    said = " ".join((parsed.text or "").lower().split())
    right = float(said == sample.text)
    reason = None if right else f"said {said!r}; the image is {sample.text}"
    return RewardResult(
        reward=right, max_reward=1.0, components={"exact": right}, parsed=parsed, reason=reason
    )


class ColourEnv(PerceptionEnv):
    """Name the colour of the image: the smallest task."""

    task = "colour"
    env_id = "PerceptionR1Test/Colour-v0"
    default_format = "text"
    formats = ("text",)
    default_prompts = {"text": "What colour is the image?"}
    scorer = staticmethod(score_colour)
    synthetic_data = Colours
    max_answer_tokens = 4
    report_columns = (("accuracy", "accuracy", "pct"),)
    render_text = True

    def _prompt_fields(self, sample):
        return {}

    def _oracle_targets(self, sample):
        return {"text": sample.text}

    def _is_success(self, result, sample):
        return result.reward == 1.0

    @classmethod
    def metrics(cls, records, samples, *, dataset=None, categories=None):
        return {"accuracy": float(np.mean([bool(r.get("is_success")) for r in records]))}


@pytest.fixture
def colour_task():
    register_task(ColourEnv)
    yield ColourEnv
    del TASKS[ColourEnv.task], ENV_IDS[ColourEnv.env_id], gym.registry[ColourEnv.env_id]


def test_the_fifth_task_makes_an_env_that_passes_the_gymnasium_checks(colour_task):
    env = gym.make(ColourEnv.env_id, render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, info = env.reset(options={"index": 4})
    assert obs["prompt"] == "What colour is the image?" and info["task"] == "colour"
    assert obs["image"][0, 0].tolist() == [0, 255, 0]  # sample 4 is green
    assert env.render().ndim == 3


def test_the_fifth_task_scores_and_answers_as_an_oracle(colour_task):
    env = gym.make(ColourEnv.env_id)
    env.reset(options={"index": 2})  # blue
    assert env.unwrapped.oracle_answer() == "blue"
    assert env.unwrapped.score(" Blue ").reward == 1.0
    wrong = env.unwrapped.score("red")
    assert wrong.reward == 0.0 and wrong.info["reason"] == "said 'red'; the image is blue"
    assert env.unwrapped.score("red", index=3).reward == 1.0  # sample 3 is red; the env stays on sample 2
    _, reward, terminated, _, info = env.step(env.unwrapped.oracle_answer())
    assert reward == 1.0 and terminated and info["is_success"] and info["index"] == 2


def test_the_fifth_task_has_its_data_metrics_and_report(colour_task):
    from perception_env.evaluation.table import task_columns
    from perception_env.tasks import sources

    assert isinstance(make_dataset("colour", split="test"), Colours) and ColourEnv.sources() == ("synthetic",)
    assert sources() == ("synthetic", "coco", "pixmo-count", "refcoco", "page-ocr", "jsonl", "hf")
    assert task_columns()["colour"] == [("accuracy", "accuracy", "pct")]
    env = gym.make(ColourEnv.env_id)
    infos, samples = [], []
    for index, answer in enumerate(["red", "green", "green"]):  # the third is blue
        env.reset(options={"index": index})
        infos.append(env.step(answer)[4])
        samples.append(env.unwrapped.sample)
    metrics = task_metrics("colour", infos, samples)
    assert (
        metrics["accuracy"] == pytest.approx(2 / 3)
        and metrics["n"] == 3
        and metrics["reward"] == pytest.approx(2 / 3)
    )
    oracle = run_evaluation(env, REFERENCE_AGENTS["oracle"](), limit=6)
    assert oracle.metrics["accuracy"] == 1.0 and len(oracle.records) == 6


def test_the_fifth_task_runs_through_perception_r1_eval(colour_task, tmp_path, capsys):
    from agents.evaluate import main

    for agent, accuracy in (("oracle", "100.0"), ("empty", "0.0")):
        out = tmp_path / agent
        main(
            [
                "eval", "--env", ColourEnv.env_id, "--agent", agent, "--limit", "5", "--output", str(out),
                "--quiet",
            ]
        )  # fmt: skip
        run = json.loads((out / "metrics.json").read_text())
        assert run["task"] == "colour" and run["metrics"]["n"] == 5
        table = (out / "table.md").read_text()
        assert "### colour" in table and table.splitlines()[4].split("|")[3].strip() == accuracy, table


def test_registering_a_task_twice_or_without_a_name_is_refused(colour_task):
    with pytest.raises(ValueError, match="already registered"):
        register_task(ColourEnv)

    class Nameless(PerceptionEnv):
        env_id = "PerceptionR1Test/Nameless-v0"

    with pytest.raises(ValueError, match="Nameless sets no task"):
        register_task(Nameless)


def test_the_built_in_tasks_are_the_registry():
    assert list(TASKS) == ["detection", "counting", "grounding", "ocr"]
    assert perception_env.ENV_IDS == {t.env_id: f"{t.__module__}:{t.__qualname__}" for t in TASKS.values()}
    assert {t.env_id for t in TASKS.values()} <= set(gym.registry)
    with pytest.raises(ValueError, match="unknown task 'colour'; one of"):
        make_dataset("colour")
