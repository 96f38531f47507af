"""verl 0.9.1 itself, in a virtual environment of its own (.venv-verl, built once and kept): the README's verl
command-line keys composed by verl's Hydra config, verl's reward loading and reward manager calling our
compute_score, verl's dataset preparing the exported images. Skipped, with pip's error, where verl cannot be
installed. verl is not in this project's .venv: it pins transformers<5.11 (this project needs >= 5.18)."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import gymnasium as gym
import pytest

import perception_env  # noqa: F401  (registers the envs)
from perception_env.integrations import verl as verl_module
from tests.documented import ROOT, code_blocks, shell_commands, user_environment
from tests.verl_venv import verl_python

QWEN2_VL = ROOT / "tests" / "fixtures" / "qwen-vl-real" / "Qwen2-VL-2B-Instruct"
GROUNDING = "PerceptionR1/Grounding-v0"
# 112 x 112 images shown in at most 6,272 pixels: verl must resize them to the env's 56 x 56
SMALL_FRAME = {
    "difficulty": "easy",
    "min_pixels": 3136,
    "max_pixels": 6272,
    "reward_config": {"format_weight": 0.2},
}


def readme_overrides() -> list[str]:
    """The README's verl command-line keys, as bash expands them (the reward file's path)."""
    readme = [c.text for b in code_blocks(ROOT / "README.md", "bash") for c in shell_commands(b)]
    (command,) = [c for c in readme if c.startswith("python -m verl.trainer.main_ppo")]
    args = command.replace("python -m verl.trainer.main_ppo", "printf '%s\\n'", 1)
    printed = subprocess.run(
        ["bash", "-c", args], cwd=ROOT, env=user_environment(), capture_output=True, text=True, check=True
    )
    return [arg for arg in printed.stdout.splitlines() if arg != "..."]


def stepped(kwargs: dict, index: int, answer: str) -> float:
    env = gym.make(GROUNDING, **kwargs)
    env.reset(options={"index": index})
    return env.step(answer)[1]


@pytest.mark.slow
def test_verl_takes_the_readme_keys_and_rewards_as_env_step(tmp_path):
    python = verl_python()
    overrides = readme_overrides()
    assert all("=" in arg for arg in overrides), overrides
    cases = []
    for answer_format in ("qwen2.5-vl", "qwen2-vl"):  # the format the README recommends, and the box tokens
        kwargs = {**SMALL_FRAME, "answer_format": answer_format}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the box-token export's warning: tested in test_verl.py
            parquet = verl_module.export_parquet(
                GROUNDING, tmp_path / f"{answer_format}.parquet", limit=2, **kwargs
            )
        env = gym.make(GROUNDING, **kwargs).unwrapped
        answers = []
        for index in range(2):
            env.reset(options={"index": index})
            oracle = env.oracle_answer()
            answers.append([oracle, oracle[: len(oracle) // 2], "no idea"])
        cases.append({"kwargs": kwargs, "parquet": str(parquet), "answers": answers})
    spec = {
        "overrides": overrides,
        "legacy_overrides": [arg.removeprefix("reward.") for arg in overrides],
        "tokenizer": str(QWEN2_VL),
        "cases": [{k: case[k] for k in ("parquet", "answers")} for case in cases],
    }
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name("verl_checks.py")), json.dumps(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("VERL-CHECKS ")]
    result = json.loads(line.removeprefix("VERL-CHECKS "))

    # verl reads the README's reward keys; without `reward.` (verl 0.9's main_ppo) it would find no reward
    assert result["reward_function"] == {"path": verl_module.__file__, "name": "compute_score"}
    assert result["legacy_loads"] is False
    json_case, tokens_case = (dict(case, **found) for case, found in zip(cases, result["cases"]))
    for case in (json_case, tokens_case):
        indices = [i for i, answers in enumerate(case["answers"]) for _ in answers]
        for index, scored in zip(indices, case["scores"]):
            # verl's reward is env.step's of the text verl decoded ...
            assert scored["reward"] == stepped(case["kwargs"], index, scored["decoded"]), scored
        assert case["image_sizes"] == [
            [56, 56],
            [56, 56],
        ]  # the env's frame, not qwen-vl-utils' default 112 x 112
    # ... which, in the JSON format, is what the model wrote
    assert all(s["decoded"] == s["answer"] for s in json_case["scores"])
    assert [s["reward"] for s in json_case["scores"]][0] == stepped(
        json_case["kwargs"], 0, json_case["answers"][0][0]
    )
    # and in Qwen2-VL's box tokens is not: the perfect answer loses its format credit
    perfect = tokens_case["scores"][0]
    assert "<|box_start|>" in perfect["answer"] and "<|box_start|>" not in perfect["decoded"]
    assert perfect["reward"] == pytest.approx(stepped(tokens_case["kwargs"], 0, perfect["answer"]) - 0.2)
