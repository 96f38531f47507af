"""The README, done as a user does it: its commands in bash through the installed ``perception-r1`` console
script, its Python snippet in a fresh interpreter. Runs are shortened by flags only (fewer steps, fewer
samples); what each command promises to print is checked against what it printed."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.documented import (
    ROOT,
    VENV_BIN,
    Command,
    code_blocks,
    python_expectations,
    run_shell,
    set_flag,
    shell_commands,
    user_environment,
    user_folder,
)

README = ROOT / "README.md"
COMMANDS = [command for block in code_blocks(README, "bash") for command in shell_commands(block)]

# Commands the suite does not run, and why (each is reported as a skip with this reason).
NOT_RUN = {
    "bash scripts/test.sh": "it runs this very suite (CI runs it through .ci/run)",
    "torchrun ": "needs CUDA GPUs; tests/agents/test_distributed.py runs the same train command data-parallel "
    "on CPU with 2 gloo ranks (DDP and FSDP2)",
    "python -m verl.trainer.main_ppo": "verl trains on GPUs; tests/integrations/test_verl_install.py runs "
    "this command's keys through verl 0.9.1's own config, reward loading, reward manager and dataset",
}


def readme_command(prefix: str) -> Command:
    """The README command that starts with ``prefix`` (exactly one: a README edit must show up here)."""
    found = [c for c in COMMANDS if c.text.startswith(prefix)]
    assert len(found) == 1, f"{len(found)} README commands start with {prefix!r}"
    return found[0]


def check_promise(command: Command, output: str) -> None:
    promised = command.promised_output()
    if promised is not None:
        assert re.search(promised, output), (
            f"`{command.text}` promises '{command.note}' but printed:\n{output[-2000:]}"
        )


RUN_HERE = (
    "bash scripts/demo.sh",
    ".venv/bin/perception-r1 make-tiny-model",
    ".venv/bin/perception-r1 sft",
    ".venv/bin/perception-r1 train --env",
    ".venv/bin/perception-r1 train --resume",
    "tensorboard --logdir",
    ".venv/bin/perception-r1 eval --env PerceptionR1/Detection-v0",
    ".venv/bin/perception-r1 eval --env PerceptionR1/Counting-v0",
)


def test_every_readme_command_is_run_here_or_excused():
    for command in COMMANDS:
        covered = [p for p in (*RUN_HERE, *NOT_RUN) if command.text.startswith(p)]
        assert covered, f"README command not exercised by tests/test_readme.py: {command.text!r}"


@pytest.mark.parametrize("prefix", sorted(NOT_RUN))
def test_commands_not_run_here(prefix):
    assert any(c.text.startswith(prefix) for c in COMMANDS), (
        f"NOT_RUN lists {prefix!r}, no longer in the README"
    )
    pytest.skip(f"README `{prefix.strip()} ...`: {NOT_RUN[prefix]}")


@pytest.mark.slow
def test_the_main_job(tmp_path):
    """`bash scripts/demo.sh` in the clone, with fewer GRPO steps and its output elsewhere: warm start,
    GRPO, held-out accuracy before -> after."""
    command = readme_command("bash scripts/demo.sh")
    out = run_shell(f"{command.text} --grpo-steps 20 --out {tmp_path / 'demo'}", ROOT)
    assert re.search(r"held-out accuracy : +\d+\.\d% -> +\d+\.\d%", out), out[-2000:]
    assert re.search(r"true count +0: +\d+/\d+ +-> +\d+/\d+", out)
    assert (tmp_path / "demo" / "grpo-seed0" / "checkpoints").is_dir()


@pytest.mark.slow
def test_training_walkthrough_then_evaluation(tmp_path):
    """The Training section top to bottom, then the Evaluation commands, in one folder as a user would."""
    cwd = user_folder(tmp_path)

    def run(command: Command, text: str | None = None) -> str:
        out = run_shell(text or command.text, cwd)
        check_promise(command, out)
        return out

    run(readme_command(".venv/bin/perception-r1 make-tiny-model"))
    sft = readme_command(".venv/bin/perception-r1 sft")
    run(sft, set_flag(sft.text, "--steps", "4"))
    train = readme_command(".venv/bin/perception-r1 train --env")
    run(train, set_flag(train.text, "--total-steps", "2"))
    checkpoints = tmp_path / "runs" / "counting" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002"]
    resume = readme_command(".venv/bin/perception-r1 train --resume")
    out = run_shell(set_flag(resume.text, "--total-steps", "3"), cwd)
    assert re.search(r"resumed from .*/step-000002 at step 2", out), out[-2000:]  # the promise, at step 2
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002", "step-000003"]

    # `tensorboard --logdir runs`, with tensorboard's own --inspect instead of a server: what the run logged
    board = readme_command("tensorboard --logdir")
    logged = run_shell(board.text + " --inspect", cwd)
    for tag in ("reward/mean", "train/loss", "hyperparameters", "samples"):
        assert tag in logged, f"{tag} missing from the TensorBoard run:\n{logged[-3000:]}"

    oracle = readme_command(".venv/bin/perception-r1 eval --env PerceptionR1/Detection-v0")
    table = run(oracle)  # as written: 50 samples
    row = next(line for line in table.splitlines() if "| oracle |" in line)
    assert row.split("|")[3].strip() == "100.0", row  # AP, in percent as the paper's tables

    evaluate = readme_command(".venv/bin/perception-r1 eval --env PerceptionR1/Counting-v0")
    text = set_flag(evaluate.text, "--limit", "4").replace(
        "step-000600", "step-000003"
    )  # the run is 3 steps long
    table = run(evaluate, text)
    row = next(line for line in table.splitlines() if line.startswith("|") and "| policy |" in line)
    assert "accuracy" in table and row.count("|") > 5, table


PYTHON_BLOCKS = code_blocks(README, "python")


def readme_snippet(marker: str) -> str:
    """The README Python snippet holding ``marker`` (exactly one: a README edit must show up here)."""
    found = [block.text for block in PYTHON_BLOCKS if marker in block.text]
    assert len(found) == 1, f"{len(found)} README Python snippets hold {marker!r}"
    return found[0]


def check_snippet(source: str, cwd, timeout: int = 120, others_print: bool = False) -> None:
    """Run ``source`` in a fresh interpreter in ``cwd``; each ``print(...)  # expected`` printed as it says
    (the last lines printed, when a library the snippet calls prints its own lines before: ``others_print``)."""
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", source],
        cwd=cwd,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.splitlines()
    expected = python_expectations(source)
    printed = printed[-len(expected) :] if others_print else printed
    assert len(printed) == len(expected) >= 1, done.stdout[-2000:]
    for line, pattern in zip(printed, expected):
        assert re.fullmatch(pattern, line), f"printed {line!r}, the README says {pattern!r}"


SNIPPETS = ('env = gym.make("PerceptionR1/Counting-v0"', "GRPOTrainer(", "export_parquet(")


def test_every_readme_snippet_is_run_here():
    for block in PYTHON_BLOCKS:
        assert any(marker in block.text for marker in SNIPPETS), f"README snippet not run: line {block.line}"


def test_the_python_snippet_prints_what_it_says(tmp_path):
    check_snippet(readme_snippet(SNIPPETS[0]), tmp_path)


@pytest.mark.slow
def test_the_verl_snippet_exports_and_scores(tmp_path):
    """As written: both splits whole (1,200 images, ~5 s)."""
    check_snippet(readme_snippet("export_parquet("), tmp_path)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "counting-test.parquet",
        "counting-train.parquet",
    ]


@pytest.mark.slow
def test_the_trl_snippet_trains_with_the_env_reward(tmp_path):
    """The TRL snippet after the Training section's first two commands (shortened), with fewer steps."""
    cwd = user_folder(tmp_path)
    run_shell(readme_command(".venv/bin/perception-r1 make-tiny-model").text, cwd)
    sft = readme_command(".venv/bin/perception-r1 sft")
    run_shell(set_flag(sft.text, "--steps", "4"), cwd)
    source = readme_snippet("GRPOTrainer(")
    written = "max_steps=200, logging_steps=20, per_device_train_batch_size=64,"
    assert written in source
    shorter = "max_steps=2, logging_steps=1, per_device_train_batch_size=16,"
    check_snippet(source.replace(written, shorter), cwd, 300, True)
    assert (tmp_path / "runs" / "trl").is_dir()
