"""Run options as users give them: fixed-value options checked at start-up, --resume with --config, the image
frame set once for the env and the processor, the options logged to TensorBoard."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import pytest

import perception_env  # noqa: F401
from agents.cli import main, train
from agents.grpo.config import GRPOConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.rloo.config import RLOOConfig
from agents.trainer import Trainer, check_same_frame
from tests.agents.support import make_config, train_args

ENV_KWARGS = {"difficulty": "easy", "answer_format": "number"}


def choice_fields(config_cls):
    return [
        (f.name, f.metadata["choices"]) for f in dataclasses.fields(config_cls) if f.metadata.get("choices")
    ]


def test_the_options_with_fixed_values_are_declared():
    names = {name for name, _ in choice_fields(GRPOConfig)}
    assert {
        "loss_type",
        "kl_estimator",
        "parallel",
        "lr_scheduler",
        "activation_checkpointing",
        "dtype",
    } <= names
    assert {"loss_type", "kl_estimator"} <= {name for name, _ in choice_fields(RLOOConfig)}


@pytest.mark.parametrize("config_cls", [GRPOConfig, RLOOConfig])
def test_a_wrong_fixed_value_fails_before_anything_loads(config_cls, tiny_model_dir, tmp_path, capsys):
    agent = "grpo" if config_cls is GRPOConfig else "rloo"
    runs = tmp_path / "runs"
    for name, choices in choice_fields(config_cls):
        flag = "--" + name.replace("_", "-")
        # a real model folder (a missing one is refused before the options are parsed): argparse's exit,
        # before any run folder is made
        with pytest.raises(SystemExit):
            main(["train", "--agent", agent, "--model", tiny_model_dir, "--output-dir", str(runs), flag, "nonsense"])  # fmt: skip
        assert not runs.exists()
        err = capsys.readouterr().err
        assert f"argument {flag}: invalid choice: 'nonsense'" in err and choices[0] in err
        with pytest.raises(ValueError, match=rf"{name} \({flag}\) must be one of {', '.join(choices)}"):
            config_cls(**{name: "nonsense"})  # a YAML file or code reach the same check
        path = tmp_path / "options.yaml"
        path.write_text(f"{name}: nonsense\n")
        with pytest.raises(ValueError, match=name):
            config_cls.from_file(path)


def test_resume_with_a_config_file_keeps_the_runs_other_options(tiny_model_dir, tmp_path, capsys):
    main(
        train_args(
            tiny_model_dir, tmp_path, "run", "--seed", "5", "--total-steps", "1", "--learning-rate", "0.001"
        )
    )
    longer = tmp_path / "longer.yaml"
    longer.write_text("total_steps: 2\n")
    main(["train", "--resume", str(tmp_path / "run"), "--config", str(longer)])
    assert "resumed from" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "checkpoints" / "step-000002" / "run.json").read_text())["config"]
    assert saved["total_steps"] == 2  # from the file
    assert (saved["seed"], saved["group_size"], saved["learning_rate"], saved["beta"]) == (5, 2, 0.001, 0.0)
    assert saved["env_kwargs"] == ENV_KWARGS and saved["model"] == tiny_model_dir


def test_a_config_file_sets_only_what_it_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\n")
    assert GRPOConfig.read_file(path) == {"learning_rate": 0.5}


def test_the_image_frame_is_set_once(tiny_model_dir):
    config = GRPOConfig(env_kwargs={"max_pixels": 50_000}, max_pixels=50_000)
    assert config.env_make_kwargs()["max_pixels"] == 50_000 and config.env_make_kwargs()["min_pixels"] == 3136
    with pytest.raises(ValueError, match=r"env_kwargs sets max_pixels=50000 but --max-pixels is 1000000"):
        GRPOConfig(env_kwargs={"max_pixels": 50_000}).env_make_kwargs()
    policy = QwenVLPolicy.from_pretrained(tiny_model_dir, max_pixels=50_000)
    check_same_frame(gym.make("PerceptionR1/Detection-v0", max_pixels=50_000), policy)
    with pytest.raises(ValueError, match="--min-pixels / --max-pixels"):
        check_same_frame(gym.make("PerceptionR1/Detection-v0"), policy)


def test_train_max_pixels_reaches_the_env_and_the_processor(tiny_model_dir, tmp_path, monkeypatch):
    """Qwen2.5-VL answers in pixels of the resized image: the env must score in the frame the model saw."""
    seen = {}

    def record(self, stop_at=None):
        seen.update(env=self.env, policy=self.agent.policy)
        return []

    monkeypatch.setattr(Trainer, "train", record)
    main(
        [
            "train", "--env", "PerceptionR1/Detection-v0", "--model", tiny_model_dir, "--max-pixels", "20000",
            "--output-dir", str(tmp_path), "--beta", "0",
        ]
    )  # fmt: skip
    env, policy = seen["env"], seen["policy"]
    assert env.unwrapped.max_pixels == 20_000 and policy.pixel_bounds == (3136, 20_000)
    observation, info = env.reset(seed=0)
    _, height, width = policy.encode_prompts([observation])["image_grid_thw"][0].tolist()
    assert info["frame"]["answer_extent"] == [width * 14, height * 14]  # the resized image the model sees


def test_the_options_are_logged_to_tensorboard(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(
        "grpo", tiny_model_dir, tmp_path, run_name="tb", total_steps=1, prompts_per_step=1, group_size=2,
        max_new_tokens=2, beta=0.0, log_every=1,
    )  # fmt: skip
    run_dir = train(config, progress=False)
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    (logged,) = events.Tensors("hyperparameters/text_summary")
    table = logged.tensor_proto.string_val[0].decode()
    assert logged.step == 0 and "|group_size|2|" in table and "|max_new_tokens|2|" in table
