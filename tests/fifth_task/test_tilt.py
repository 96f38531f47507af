"""The fifth task (tests/fifth_task/tilt.py), added without a change to the package: a target field of its
own (``angle``), its own answer format (``degrees``) and JSONL schema; data from ``jsonl`` and ``hf``; made
with ``gym.make``, stepped, scored and evaluated through the evaluation runner and its outputs."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

from perception_env import ENV_IDS, TASKS, register_task
from perception_env.data import DatasetFormatError
from perception_env.evaluation import REFERENCE_AGENTS, run_evaluation, task_metrics, write_outputs
from perception_env.formats import FORMATS, get_format, register_format
from perception_env.tasks import make_dataset
from tests.fifth_task.tilt import DegreesFormat, TiltEnv, angle_error, line_image

ANGLES = [0.0, 30.0, 90.0, 135.0]


@pytest.fixture
def tilt_task():
    register_format(DegreesFormat)
    register_task(TiltEnv)
    yield TiltEnv
    del TASKS[TiltEnv.task], ENV_IDS[TiltEnv.env_id], gym.registry[TiltEnv.env_id], FORMATS["degrees"]


@pytest.fixture
def tilt_jsonl(tmp_path):
    """Four line images and their JSONL file, one angle each."""
    lines = []
    for i, angle in enumerate(ANGLES):
        Image.fromarray(line_image(angle)).save(tmp_path / f"line{i}.png")
        lines.append(json.dumps({"image": f"line{i}.png", "angle": angle}))
    path = tmp_path / "tilt.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_degrees_format_reads_and_writes_its_own_field(tilt_task):
    fmt = get_format("degrees")
    assert fmt.write(angle=30.0) == "30°" and fmt.parse("30°").values == {"angle": 30.0}
    assert fmt.parse(" 12.5 degrees.").values == {"angle": 12.5} and fmt.parse("7<|im_end|>").well_formed
    bad = fmt.parse("about thirty")
    assert not bad.well_formed and bad.values == {} and "not an angle" in bad.problems[0]
    assert fmt.parse("30°").to_info()["values"] == {"angle": 30.0} and "values" not in bad.to_info()
    with pytest.raises(ValueError, match="already registered"):
        register_format(DegreesFormat)

    class Nameless(DegreesFormat):
        name = ""

    with pytest.raises(ValueError, match="Nameless sets no name"):
        register_format(Nameless)
    with pytest.raises(ValueError, match="unknown answer format 'radians'; known: .*degrees"):
        get_format("radians")


def test_the_fifth_task_is_made_with_gym_make_on_jsonl_data_stepped_and_scored(tilt_task, tilt_jsonl):
    env = gym.make(TiltEnv.env_id, source="jsonl", data_kwargs={"path": str(tilt_jsonl)})
    check_env(env.unwrapped)
    obs, info = env.reset(options={"index": 1})
    assert (
        obs["prompt"] == "By how many degrees is the line turned from horizontal?" and info["task"] == "tilt"
    )
    assert obs["image"].shape == (48, 48, 3) and env.unwrapped.sample.targets == {"angle": 30.0}
    assert env.unwrapped.oracle_answer() == "30°"
    assert env.unwrapped.score("39 degrees").reward == pytest.approx(1 - 9 / 90)  # 9 degrees off
    assert env.unwrapped.score("120").reward == 0.0  # perpendicular
    assert env.unwrapped.score("3", index=0).reward == pytest.approx(1 - 3 / 90)
    assert env.unwrapped.score("178°", index=0).info["is_success"]  # 2 degrees from horizontal
    malformed = env.unwrapped.score("a steep line")
    assert (
        malformed.reward == 0.0
        and not malformed.info["parsed"]["well_formed"]
        and "not an angle" in malformed.info["reason"]
    )
    _, reward, terminated, _, info = env.step("30°")
    assert (
        reward == 1.0 and terminated and info["is_success"] and info["target"]["targets"] == {"angle": 30.0}
    )


def test_the_jsonl_and_hf_sources_read_the_task_s_own_schema(tilt_task, tilt_jsonl, tmp_path):
    assert TiltEnv.sources() == ("jsonl", "hf")  # no built-in data
    data = make_dataset("tilt", "jsonl", path=tilt_jsonl)
    assert [s.targets["angle"] for s in data] == ANGLES and (data[2].width, data[2].height) == (48, 48)
    with pytest.raises(ValueError, match="no built-in data"):
        make_dataset("tilt")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "line0.png", "angle": 200}) + "\n")
    with pytest.raises(DatasetFormatError, match=r"bad.jsonl, line 1: angle must be a number of degrees"):
        make_dataset("tilt", "jsonl", path=bad)

    datasets = pytest.importorskip("datasets")
    rows = {"picture": [str(tilt_jsonl.parent / f"line{i}.png") for i in range(4)], "tilt_deg": ANGLES}
    datasets.Dataset.from_dict(rows).to_parquet(tmp_path / "tilt.parquet")
    hf = make_dataset(
        "tilt", "hf", path=tmp_path / "tilt.parquet", columns={"image": "picture", "angle": "tilt_deg"}
    )
    assert [s.targets["angle"] for s in hf] == ANGLES


def test_the_fifth_task_is_evaluated_through_the_runner_and_its_outputs(tilt_task, tilt_jsonl, tmp_path):
    env = gym.make(TiltEnv.env_id, source="jsonl", data_kwargs={"path": str(tilt_jsonl)})
    oracle = run_evaluation(env, REFERENCE_AGENTS["oracle"]())
    assert (
        oracle.metrics["within_5"] == 1.0 and oracle.metrics["mean_error"] == 0.0 and oracle.metrics["n"] == 4
    )
    empty = run_evaluation(env, REFERENCE_AGENTS["empty"]())
    assert (
        empty.metrics["mean_error"] == 90.0
        and empty.metrics["within_5"] == 0.0
        and empty.metrics["reward"] == 0.0
    )

    infos, samples = [], []
    for index, answer in enumerate(["10°", "30°", "0°", "135°"]):  # 10 off, exact, 90 off, exact
        env.reset(options={"index": index})
        infos.append(env.step(answer)[4])
        samples.append(env.unwrapped.sample)
    metrics = task_metrics("tilt", infos, samples)
    assert metrics["mean_error"] == pytest.approx((10 + 0 + 90 + 0) / 4) and metrics["within_5"] == 0.5

    run = {"task": "tilt", "benchmark": "lines", "agent": "oracle", "metrics": oracle.metrics}
    paths = write_outputs(tmp_path / "out", run, oracle.records, env=env)
    table = paths["table"].read_text()
    assert "### tilt" in table and "| within 5° |" in table and "| lines | oracle | 100.0 | 0.00 |" in table
    assert paths["report"].is_file()


def test_angle_error_is_the_angle_between_undirected_lines():
    assert angle_error(179.0, 0.0) == pytest.approx(1.0) and angle_error(45.0, 135.0) == 90.0
    assert angle_error(-10.0, 10.0) == 20.0
