"""The command line as people expect: one-line errors (``--debug``: the traceback), log levels, progress
bars, CPU threads, a summary at the end of ``train``."""

from __future__ import annotations

import json
import types

import pytest
import torch

from agents.cli import main, training_summary
from agents.config import SetupError
from agents.console import SMALL_MODEL, set_threads
from agents.policies.qwen_vl import QwenVLPolicy
from tests.agents.support import ENV_KWARGS

ENV = ["--env", "PerceptionR1/Counting-v0", "--env-kwargs", json.dumps(ENV_KWARGS)]


@pytest.fixture
def no_model_loads(monkeypatch):
    """A model load (from a folder or the hub) fails the test: what is checked here fails before it."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded (or the hub asked) before the setting was checked")

    monkeypatch.setattr(QwenVLPolicy, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", refuse)


def one_line_exit(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    message = str(exited.value.code)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_a_model_folder_that_does_not_exist_says_so_without_the_hub(tmp_path, monkeypatch, no_model_loads):
    """``runs/nope`` is a valid hub id, but beside a local ``runs/`` it is a folder, which does not exist."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for command in (["sft", *ENV, "--output", "runs/warm"], ["train", *ENV, "--output-dir", "runs"]):
        message = one_line_exit([*command, "--model", "runs/nope"])
        assert f"perception-r1 {command[0]}: no such folder: runs/nope" in message
        assert "--debug" in message


def test_an_uncached_hub_id_offline_fails_at_once(tmp_path, monkeypatch, no_model_loads):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    message = one_line_exit(["sft", *ENV, "--model", "SomeOrg/absent", "--output", str(tmp_path / "warm")])
    assert "SomeOrg/absent (--model) is neither a local folder nor in the hub cache" in message


def test_a_wrong_env_id_is_reported_before_the_model_loads(tiny_model_dir, tmp_path, no_model_loads):
    for command in (
        ["train", "--output-dir", str(tmp_path)],
        ["sft", "--output", str(tmp_path / "warm")],
        ["eval", "--output", str(tmp_path / "eval")],
    ):
        message = one_line_exit([*command, "--env", "PerceptionR1/Countin-v0", "--model", tiny_model_dir])
        assert "--env PerceptionR1/Countin-v0: Environment `Countin` doesn't exist" in message
        assert "PerceptionR1/Counting-v0" in message  # the ids there are


def test_env_arguments_the_env_refuses_are_one_line(tmp_path, no_model_loads, tiny_model_dir):
    kwargs = ["--env-kwargs", '{"difficulty": "eazy"}']
    message = one_line_exit(["eval", "--env", "PerceptionR1/Counting-v0", *kwargs, "--agent", "oracle"])
    assert """--env-kwargs '{"difficulty": "eazy", "split": "test"}': unknown difficulty 'eazy'""" in message


@pytest.mark.parametrize("command", ["sft", "train", "eval"])
@pytest.mark.parametrize("text, problem", [("{bad", "not JSON"), ("[1]", "a JSON object {...} is needed")])
def test_invalid_json_is_one_line_without_the_usage_block(command, text, problem, capsys, tmp_path):
    argv = [command, "--env", "PerceptionR1/Counting-v0", "--env-kwargs", text, "--model", "m"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--output", str(tmp_path)] if command != "train" else argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "usage:" not in err and err.count("\n") == 1, err
    assert f"perception-r1 {command}: error: argument --env-kwargs: {problem}" in err


def test_a_wrong_tour_difficulty_is_one_line(tmp_path):
    message = one_line_exit(["tour", "--difficulty", "eazy", "--out", str(tmp_path / "tour")])
    assert "perception-r1 tour: --difficulty eazy: unknown difficulty 'eazy'" in message


def test_debug_shows_the_traceback(tmp_path, no_model_loads):
    with pytest.raises(SetupError, match="Environment `Countin` doesn't exist"):
        main(["eval", "--env", "PerceptionR1/Countin-v0", "--agent", "oracle", "--debug"])


@pytest.fixture
def restores_progress_bars(monkeypatch):
    """--quiet turns transformers' progress bars off in this process: on again afterwards."""
    import transformers

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    yield
    transformers.utils.logging.enable_progress_bar()


def test_log_levels_and_progress_bars(
    tiny_model_dir, tmp_path, capsys, one_torch_thread, restores_progress_bars
):
    """sft and eval draw progress bars on stderr (--quiet: none, transformers' too); --verbose adds debug
    lines; results stay on stdout."""
    sft = ["sft", *ENV, "--model", tiny_model_dir, "--steps", "2", "--batch-size", "2"]
    main([*sft, "--output", str(tmp_path / "a")])
    out, err = capsys.readouterr()
    assert "sft: 100%" in err and "loss=" in err and f"saved to {tmp_path / 'a'}" in out
    main([*sft, "--output", str(tmp_path / "b"), "--quiet"])
    out, err = capsys.readouterr()
    assert "sft" not in err and "Loading weights" not in err and f"saved to {tmp_path / 'b'}" in out
    main([*sft, "--output", str(tmp_path / "c"), "--verbose"])
    assert "torch CPU threads: 1" in capsys.readouterr().err

    evaluate = ["eval", *ENV, "--agent", "oracle", "--limit", "4"]
    main([*evaluate, "--output", str(tmp_path / "e1")])
    out, err = capsys.readouterr()
    assert "eval PerceptionR1/Counting-v0: 100%" in err and "4/4" in err and "| oracle |" in out
    main([*evaluate, "--output", str(tmp_path / "e2"), "--quiet"])
    assert capsys.readouterr().err == ""


def test_threads(tiny_model_dir, tmp_path, one_torch_thread, monkeypatch):
    """``auto``: one thread for a model under SMALL_MODEL parameters, min(cores, 8) above; a number is kept."""
    tiny = QwenVLPolicy.from_pretrained(tiny_model_dir).model
    assert set_threads("auto", tiny) == 1 and torch.get_num_threads() == 1
    big = types.SimpleNamespace(parameters=lambda: [types.SimpleNamespace(numel=lambda: SMALL_MODEL)])
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert set_threads("auto", big) == 8
    assert set_threads(2) == 2 and torch.get_num_threads() == 2
    main(["sft", *ENV, "--model", tiny_model_dir, "--output", str(tmp_path / "w"), "--steps", "1"])
    assert torch.get_num_threads() == 1  # auto, for the tiny model
    with pytest.raises(SystemExit):
        main(["sft", *ENV, "--model", tiny_model_dir, "--output", str(tmp_path / "x"), "--threads", "0"])


def test_training_summary_first_and_last():
    rows = [{"reward/mean": r} for r in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    rows[1]["eval/success"], rows[5]["eval/success"] = 0.25, 0.75
    assert training_summary(rows, window=2) == [
        "reward (mean of 2 steps): 0.100 at the start -> 0.900 at the end",
        "held-out success: 25.0% (its step 2) -> 75.0% (its step 6)",
    ]
    assert training_summary([{"reward/mean": 0.5}]) == [
        "reward (mean of 1 steps): 0.500 at the start -> 0.500 at the end"
    ]
    assert training_summary([]) == []


def test_a_missing_model_folder_is_reported_before_torch_and_transformers_load(tmp_path):
    """`perception-r1 train --model /no/such/folder` (the installed command): the one-line error, with neither
    torch nor transformers imported (before: both were, ~6 s of CPU, to build the train options).

    perception_env is imported (the options' pixel bounds are the envs' own, agents/config.py), without
    scipy.optimize, most of its import time (tests/test_package.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    console = Path(sys.executable).with_name("perception-r1")
    missing = tmp_path / "no" / "such" / "folder"
    done = subprocess.run(
        [str(console), "train", *ENV, "--model", str(missing), "--output-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},  # every import, on stderr
        timeout=120,
    )
    imported = {
        line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 1 and said == [
        f"perception-r1 train: no such folder: {missing} (--model names neither a local folder nor a hub id) "
        "(--debug: the traceback)"
    ], done.stderr[-2000:]
    assert "agents.cli" in imported and not {"torch", "transformers", "scipy.optimize"} & imported
    assert not (tmp_path / "runs").exists()


def test_the_first_screen_loads_neither_the_envs_nor_torch():
    """`perception-r1 --help` and `perception-r1 demo --help` (the README's first commands) list the commands
    and the demo's tasks without importing perception_env, gymnasium, numpy or torch: the flags' types, the
    errors and the recipes' names live in modules that import none of them (0.36 s of CPU before, 0.05 s)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    console = Path(sys.executable).with_name("perception-r1")
    for argv in (["--help"], ["demo", "--help"]):
        done = subprocess.run(
            [str(console), *argv],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
            timeout=120,
        )
        imported = {
            line.split("|")[-1].strip()
            for line in done.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert done.returncode == 0 and "usage: perception-r1" in done.stdout, done.stderr[-2000:]
        assert "agents.demo.recipes" in imported
        assert not {"perception_env", "gymnasium", "numpy", "torch"} & imported, argv
    assert "counting-points" in done.stdout  # the recipes' names reached demo's --task choices
