"""Every example runs as its docstring says (bash, the venv's python and console script on PATH), shortened
by flags only, and prints what it promises."""

from __future__ import annotations

import subprocess

import pytest

from tests.documented import (
    ROOT,
    Command,
    docstring_commands,
    run_shell,
    set_flag,
    user_environment,
    user_folder,
)

EXAMPLES = ROOT / "examples"


def documented(example: str, starts_with: str) -> Command:
    found = [c for c in docstring_commands(EXAMPLES / example) if c.text.startswith(starts_with)]
    assert len(found) == 1, f"{example}: {len(found)} documented commands start with {starts_with!r}"
    return found[0]


# what each test below runs: every documented command must be here
RUN = {
    "custom_agent.py": ["python examples/custom_agent.py", "perception-r1 train --agent"],
    "custom_reward_wrapper.py": ["python examples/custom_reward_wrapper.py"],
    "oracle_render.py": ["python examples/oracle_render.py"],
    "random_agent.py": ["python examples/random_agent.py"],
    "tutorial.py": ["python examples/tutorial.py"],  # the full length too: --quick only sets fewer steps
}


def test_every_documented_example_command_is_run():
    assert sorted(RUN) == sorted(p.name for p in EXAMPLES.glob("*.py"))
    for example, prefixes in RUN.items():
        for command in docstring_commands(EXAMPLES / example):
            assert any(command.text.startswith(p) for p in prefixes), (
                f"{example}: {command.text!r} is not run"
            )


def test_random_agent_visits_every_env(tmp_path):
    import perception_env

    command = documented("random_agent.py", "python ")
    out = run_shell(set_flag(command.text, "--episodes", "2"), user_folder(tmp_path))
    for env_id in perception_env.ENV_IDS:
        assert env_id in out
    assert out.count("mean reward over 2 episodes") == len(perception_env.ENV_IDS)


def test_oracle_render_saves_pngs_with_full_reward(tmp_path):
    from PIL import Image

    command = documented("oracle_render.py", "python ")
    out = run_shell(command.text + " --quick", user_folder(tmp_path))
    pngs = sorted((tmp_path / "runs" / "oracle").glob("*.png"))
    assert len(pngs) == 4 and all(Image.open(p).size[0] > 0 for p in pngs)
    assert out.count("success=True") == 4


@pytest.mark.slow
def test_custom_reward_wrapper_adds_the_bonus_and_trains(tmp_path):
    command = documented("custom_reward_wrapper.py", "python ")
    out = run_shell(f"{command.text} --quick --out {tmp_path}", user_folder(tmp_path))
    assert "task reward 0.000 + bonus 0.50 = 0.500" in out
    assert "step 2:" in out and (tmp_path / "run" / "checkpoints" / "step-000002").is_dir()


@pytest.mark.slow
def test_custom_agent_trains_and_checkpoints_its_baseline(tmp_path):
    from agents.checkpoints import read_state

    command = documented("custom_agent.py", "python ")
    out = run_shell(f"{set_flag(command.text, '--steps', '2')} --out {tmp_path}", user_folder(tmp_path))
    assert "step 2:" in out
    state = read_state(tmp_path / "run" / "checkpoints" / "step-000002")
    assert state["agent"]["baseline"] > 0
    assert len((EXAMPLES / "custom_agent.py").read_text().splitlines()) < 100


@pytest.mark.slow
def test_custom_agent_plugs_into_the_train_command(tmp_path):
    """`perception-r1 train --agent file.py:Class` as documented: its own options, checkpoints, and --resume,
    which runs the agent's file only when --agent names it again (a checkpoint cannot choose code to run)."""
    from agents.checkpoints import read_state

    cwd = user_folder(tmp_path)
    command = documented("custom_agent.py", "perception-r1 train")
    run_shell("perception-r1 make-tiny-model runs/tiny", cwd)  # what its note says to run first
    short = "--total-steps 1 --prompts-per-step 2 --group-size 2 --max-new-tokens 3 --run-name mine"
    run_shell(f"{command.text} {short}", cwd)
    refused = subprocess.run(
        "perception-r1 train --resume runs/mine --total-steps 2",
        shell=True,
        cwd=cwd,
        env=user_environment(),
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "add --agent examples/custom_agent.py:ReinforceAgent" in refused.stderr
    out = run_shell(
        "perception-r1 train --resume runs/mine --agent examples/custom_agent.py:ReinforceAgent --total-steps 2",
        cwd,
    )
    assert "resumed from" in out
    state = read_state(tmp_path / "runs" / "mine" / "checkpoints" / "step-000002")
    assert state["agent_name"] == "examples/custom_agent.py:ReinforceAgent"
    assert state["config"]["baseline_momentum"] == 0.5 and "baseline" in state["agent"]


@pytest.fixture(scope="module")
def tutorial_output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tut")
    command = documented("tutorial.py", "python examples/tutorial.py --quick")
    return run_shell(f"{command.text} --group-size 4 --out {folder}", user_folder(folder))


@pytest.mark.parametrize(
    "section",
    ["1. The environment", "3. G = 4", "5. Advantages", "6. Log-probabilities", "7. One gradient step"],
)
def test_tutorial_prints_each_step(tutorial_output, section):
    assert section in tutorial_output


def test_tutorial_one_step_raises_the_objective_and_trains(tutorial_output):
    line = next(row for row in tutorial_output.splitlines() if "objective mean_i" in row)
    before, after = (float(v) for v in line.split(":")[1].split("->"))
    assert after >= before  # strictly, unless the group happened to agree (advantages all 0)
    assert "step   3:" in tutorial_output and "held-out greedy accuracy" in tutorial_output
