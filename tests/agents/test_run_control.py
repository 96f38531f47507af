"""Run control: impossible settings fail at start-up naming the flag, outputs and model folders are checked
before any work, and a checkpoint never holds NaN/inf weights."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import typing

import gymnasium as gym
import pytest
import torch

import perception_env  # noqa: F401
from agents.arguments import bound_problem
from agents.cli import main
from agents.config import SetupError, TrainConfig
from agents.grpo.config import GRPOConfig
from agents.policies.processor import load_processor
from agents.policies.qwen_vl import QwenVLPolicy, check_model_source
from agents.rloo.config import RLOOConfig
from tests.agents.support import ENV_KWARGS, one_step_trainer


@pytest.fixture
def nothing_loads(monkeypatch):
    """Any model load, or any env built, fails the test: what is checked here must fail before them."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model or an env was loaded before the setting was checked")

    monkeypatch.setattr(QwenVLPolicy, "from_pretrained", refuse)
    monkeypatch.setattr("agents.console.make_env", refuse)
    monkeypatch.setattr("agents.evaluate.build_env", refuse)


def _exit_message(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return str(exited.value.code)


IMPOSSIBLE = [  # (agent, flags, the option the message must name, what it must say)
    ("grpo", ["--group-size", "1"], "group_size (--group-size)", "must be >= 2"),
    ("grpo", ["--total-steps", "0"], "total_steps (--total-steps)", "must be >= 1"),
    ("grpo", ["--total-steps", "-5"], "total_steps (--total-steps)", "must be >= 1"),
    ("grpo", ["--num-iterations", "0"], "num_iterations (--num-iterations)", "must be >= 1"),
    ("grpo", ["--temperature", "0"], "temperature (--temperature)", "must be > 0"),
    ("grpo", ["--temperature", "-1"], "temperature (--temperature)", "must be > 0"),
    ("grpo", ["--learning-rate", "inf"], "learning_rate (--learning-rate)", "must be a finite number"),
    ("grpo", ["--learning-rate", "nan"], "learning_rate (--learning-rate)", "must be a finite number"),
    ("grpo", ["--learning-rate", "0"], "learning_rate (--learning-rate)", "must be > 0"),
    ("grpo", ["--save-every", "0"], "save_every (--save-every)", "must be >= 1"),
    ("grpo", ["--save-total-limit", "-1"], "save_total_limit (--save-total-limit)", "must be >= 0"),
    ("grpo", ["--top-p", "0"], "top_p (--top-p)", "must be > 0"),
    ("grpo", ["--top-p", "1.5"], "top_p (--top-p)", "must be <= 1"),
    ("grpo", ["--max-new-tokens", "0"], "max_new_tokens (--max-new-tokens)", "must be >= 1"),
    ("grpo", ["--prompts-per-step", "0"], "prompts_per_step (--prompts-per-step)", "must be >= 1"),
    ("grpo", ["--adam-beta2", "1"], "adam_beta2 (--adam-beta2)", "must be < 1"),
    ("grpo", ["--beta", "-0.1"], "beta (--beta)", "must be >= 0"),
    ("grpo", ["--advantage-eps", "0"], "advantage_eps (--advantage-eps)", "must be > 0"),
    ("grpo", ["--eval-samples", "0"], "eval_samples (--eval-samples)", "must be >= 1"),
    ("rloo", ["--group-size", "1"], "group_size (--group-size)", "must be >= 2"),
    ("rloo", ["--beta", "-1"], "beta (--beta)", "must be >= 0"),
    (
        "grpo",
        ["--min-pixels", "5000", "--max-pixels", "4000"],
        "min_pixels (--min-pixels)",
        "must not exceed",
    ),
    ("grpo", ["--env-kwargs", '{"max_pixels": 50000}'], "--max-pixels", "set it once"),
]


@pytest.mark.parametrize(
    "agent, flags, option, problem", IMPOSSIBLE, ids=[f"{a} {' '.join(f)}" for a, f, _, _ in IMPOSSIBLE]
)
def test_an_impossible_setting_fails_at_start_naming_its_flag(
    agent, flags, option, problem, tiny_model_dir, tmp_path, nothing_loads
):
    # a real model folder (a missing one is refused before the options: test_console.py): a model or an env
    # built (nothing_loads) would mean the setting got past the check
    message = _exit_message(
        ["train", "--agent", agent, "--model", tiny_model_dir, "--output-dir", str(tmp_path / "runs"), *flags]
    )
    assert option in message and problem in message, message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config_cls", [GRPOConfig, RLOOConfig])
def test_every_float_option_refuses_nan_and_inf(config_cls):
    hints = typing.get_type_hints(config_cls)
    floats = [f.name for f in dataclasses.fields(config_cls) if hints[f.name] is float]
    assert {"learning_rate", "temperature", "top_p", "beta"} <= set(floats)
    for name in floats:
        for value in (float("nan"), float("inf"), float("-inf")):
            flag = "--" + name.replace("_", "-")
            with pytest.raises(SetupError, match=rf"{name} \({flag}\) must be a finite number"):
                config_cls(**{name: value})


def test_bounds_hold_for_values_at_and_past_them():
    assert bound_problem(1, minimum=1) is None and bound_problem(0, minimum=1) == "must be >= 1"
    assert bound_problem(1e-12, exclusive_minimum=0) is None
    assert bound_problem(0.0, exclusive_minimum=0) == "must be > 0"
    assert bound_problem(1.0, maximum=1) is None and bound_problem(1.0, exclusive_maximum=1) == "must be < 1"
    assert bound_problem(float("nan")) == "must be a finite number"
    defaults = GRPOConfig()  # every default is within its declared range
    assert defaults.save_total_limit == 0 and defaults.group_size == 8


def test_a_config_file_is_checked_value_by_value_naming_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1e-6\n")  # YAML 1.1 reads this as the string '1e-6'
    assert GRPOConfig.read_file(path) == {"learning_rate": 1e-6}
    assert GRPOConfig.from_file(path).learning_rate == 1e-6
    path.write_text("total_steps: 0\n")
    with pytest.raises(SetupError, match=rf"{path}: total_steps \(--total-steps\) must be >= 1; got 0"):
        GRPOConfig.read_file(path)
    path.write_text("total_steps: 2.5\n")
    with pytest.raises(SetupError, match="total_steps .* must be a whole number; got 2.5"):
        GRPOConfig.read_file(path)
    path.write_text("learning_rate: fast\n")
    with pytest.raises(SetupError, match="learning_rate .* must be a number; got 'fast'"):
        GRPOConfig.read_file(path)
    with pytest.raises(SetupError, match="no such file"):
        GRPOConfig.read_file(tmp_path / "absent.yaml")


def test_code_gets_the_same_checks_as_flags():
    with pytest.raises(SetupError, match=r"save_every \(--save-every\) must be >= 1; got 0"):
        TrainConfig(save_every=0)
    with pytest.raises(SetupError, match="group_size"):
        GRPOConfig(group_size=1)
    assert RLOOConfig(group_size=2).group_size == 2 and GRPOConfig(group_size=2).group_size == 2


# ---------------------------------------------------------------------------------- outputs first
def test_sft_output_that_is_a_file_fails_before_any_work(tmp_path, nothing_loads):
    existing = tmp_path / "weights.bin"
    existing.write_text("x")
    message = _exit_message(
        [
            "sft", "--env", "PerceptionR1/Counting-v0", "--model", str(tmp_path / "m"),
            "--output", str(existing), "--steps", "1",
        ]
    )  # fmt: skip
    assert f"--output {existing}: is an existing file, not a folder" in message
    message = _exit_message(
        [
            "sft", "--env", "PerceptionR1/Counting-v0", "--model", str(tmp_path / "m"),
            "--output", str(existing / "sub"), "--steps", "1",
        ]
    )  # fmt: skip
    assert f"{existing} is a file, so the folder cannot be made" in message


@pytest.mark.parametrize("agent", [["--agent", "oracle"], ["--model", "Qwen/Qwen2-VL-2B-Instruct"]])
def test_eval_output_that_is_a_file_fails_before_any_work(agent, tmp_path, nothing_loads):
    existing = tmp_path / "table.md"
    existing.write_text("x")
    message = _exit_message(["eval", "--env", "PerceptionR1/Counting-v0", *agent, "--output", str(existing)])
    assert f"--output {existing}: is an existing file" in message


def test_train_run_folder_that_is_a_file_fails_before_any_work(tiny_model_dir, tmp_path, nothing_loads):
    (tmp_path / "run").write_text("x")
    message = _exit_message(
        ["train", "--model", tiny_model_dir, "--output-dir", str(tmp_path), "--run-name", "run"]
    )
    assert "--output-dir / --run-name" in message and "is an existing file" in message


@pytest.mark.parametrize("flags", [["--steps", "0"], ["--batch-size", "0"], ["--learning-rate", "-1"]])
def test_sft_numbers_are_checked_when_parsed(flags, tmp_path, capsys, nothing_loads):
    with pytest.raises(SystemExit):
        main(["sft", "--env", "PerceptionR1/Counting-v0", "--model", "m", "--output", str(tmp_path), *flags])
    assert f"argument {flags[0]}: must be" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- model folders
def test_a_local_model_path_that_does_not_exist_fails_at_once(tmp_path, monkeypatch):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("transformers (and the hub) was asked")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_hub)
    for path in (str(tmp_path / "absent"), "./absent", "runs/a/b"):
        with pytest.raises(FileNotFoundError, match=f"no such folder: {path}"):
            QwenVLPolicy.from_pretrained(path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # "runs/nope" is a valid hub id; beside a local runs/ it names a folder
    with pytest.raises(FileNotFoundError, match="no such folder: runs/nope .*runs/ is a local folder"):
        QwenVLPolicy.from_pretrained("runs/nope")
    message = _exit_message(["train", "--model", "./absent", "--output-dir", str(tmp_path)])
    assert message.startswith("perception-r1 train: no such folder: ./absent") and "\n" not in message


def test_a_hub_id_still_goes_to_the_hub_unchanged(monkeypatch):
    import transformers

    asked = []

    def record(name, **kwargs):
        asked.append(name)
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", record)
    assert check_model_source("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    with pytest.raises(OSError, match="offline"):
        QwenVLPolicy.from_pretrained("Qwen/Qwen2-VL-2B-Instruct")
    assert asked == ["Qwen/Qwen2-VL-2B-Instruct"]


@pytest.mark.parametrize(
    "removed, said",
    [
        ("tokenizer.json", "no tokenizer.json (nor vocab.json + merges.txt)"),
        ("config.json", "no config.json"),
        ("model.safetensors", "no model weights"),
        ("processor_config.json", "no preprocessor_config.json (nor processor_config.json)"),
    ],
)
def test_a_model_folder_missing_a_piece_says_which(removed, said, tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / removed).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{folder} (name_or_path): {said}")):
        QwenVLPolicy.from_pretrained(folder)
    message = _exit_message(["train", "--model", str(folder), "--output-dir", str(tmp_path)])
    assert f"{folder} (--model): {said}" in message


def test_the_processor_alone_names_a_missing_tokenizer(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_processor(folder)


def test_a_model_file_cut_short_is_named(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(SetupError, match=rf"{weights}: damaged or cut short"):
        QwenVLPolicy.from_pretrained(folder)


# ---------------------------------------------------------------------------------- finite checkpoints
def test_a_checkpoint_with_nan_weights_is_never_written(tiny_model_dir, tmp_path):
    trainer = one_step_trainer(tiny_model_dir, tmp_path / "run")
    trainer.step = 3
    first = trainer.save_checkpoint()  # finite: written
    assert first.name == "step-000003"
    name, weight = next(iter(trainer.agent.policy.model.named_parameters()))
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")
    trainer.step = 4
    with pytest.raises(FloatingPointError, match=rf"step 4: trained weights hold NaN or inf .*{name}"):
        trainer.save_checkpoint()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-000003"]
    latest = json.loads((tmp_path / "run" / "latest_checkpoint.json").read_text())
    assert latest == {"checkpoint": "step-000003"}


def test_sft_stops_on_a_nan_loss_without_stepping(tiny_model_dir):
    from agents.sft import supervised_warm_start

    policy = QwenVLPolicy.from_pretrained(tiny_model_dir)
    env = gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS)
    weight = policy.model.get_input_embeddings().weight
    with torch.no_grad():
        weight.fill_(float("nan"))  # every token's embedding: the loss is NaN
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="sft step 1: the loss is nan"):
        supervised_warm_start(policy, env, steps=2, batch_size=2)
    after = policy.model.state_dict()  # nothing stepped: every other weight as it was
    assert all(torch.equal(before[k], after[k]) for k in before if not before[k].isnan().any())
    with pytest.raises(SetupError, match="batch_size must be >= 1; got 0"):
        supervised_warm_start(policy, env, steps=1, batch_size=0)


def test_sft_never_saves_non_finite_weights(tiny_model_dir, tmp_path, monkeypatch):
    def poison(policy, env, **kwargs):
        with torch.no_grad():
            next(policy.model.parameters()).fill_(float("inf"))
        return [1.0]

    monkeypatch.setattr("agents.sft.supervised_warm_start", poison)
    with pytest.raises(FloatingPointError, match="hold NaN or inf"):
        main(
            [
                "sft", "--env", "PerceptionR1/Counting-v0", "--env-kwargs", json.dumps(ENV_KWARGS),
                "--model", tiny_model_dir, "--output", str(tmp_path / "warm"), "--steps", "1",
            ]
        )  # fmt: skip
    assert not (tmp_path / "warm").exists()
