"""Helpers the agents' tests share (fixtures are in conftest.py): a run on the tiny model, a signal wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import torch

import perception_env  # noqa: F401  (registers the envs)

# counting, easy, answered with a number: a random tiny model writes one in a few tokens
ENV_KWARGS = {"difficulty": "easy", "answer_format": "number"}


class AnswerLengthBonus(gym.Wrapper):
    """0.1 x answer length added to the reward: a random tiny model's groups then always disagree, so every
    step has a learning signal (the loop's exactness is under test, not perception)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward + 0.1 * len(action), terminated, truncated, info


def train_args(model: str, out: Path, name: str, *extra: str) -> list[str]:
    """``perception-r1 train`` into ``out/name``: counting, one prompt, two answers of up to two tokens, no
    reference model, no sample images; ``extra`` flags after (a later flag overrides)."""
    return [
        "train", "--env", "PerceptionR1/Counting-v0", "--env-kwargs", json.dumps(ENV_KWARGS),
        "--model", model, "--output-dir", str(out), "--run-name", name,
        "--prompts-per-step", "1", "--group-size", "2", "--max-new-tokens", "2", "--beta", "0",
        "--log-samples-every", "0", *extra,
    ]  # fmt: skip


def make_config(name: str, model: str, out: Path, **overrides):
    """Registered agent ``name``'s config for a 2-step run of 2 prompts x 3 answers on the tiny model."""
    from agents.registry import AGENTS

    config_cls = AGENTS[name].config_class
    values = dict(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs=ENV_KWARGS,
        model=model,
        output_dir=str(out),
        run_name="run",
        total_steps=2,
        prompts_per_step=2,
        group_size=3,
        max_new_tokens=3,
        learning_rate=1e-2,
        save_every=100,
        log_every=0,
        log_samples_every=0,
        beta=0.04,
        lr_scheduler="linear",
    )
    values.update(overrides)
    return config_cls(**values)


def make_trainer(name: str, model: str, out: Path, policy=None, **overrides):
    """A Trainer of registered agent ``name`` on :func:`make_config`'s run, rewards with :class:`AnswerLengthBonus`."""
    config = make_config(name, model, out, **overrides)
    env = AnswerLengthBonus(gym.make(config.env_id, **config.env_kwargs))
    return build_test_run(config, out / "run", agent=name, env=env, policy=policy).trainer


def one_step_trainer(model: str, run_dir: Path, **overrides):
    """A GRPO Trainer of one step, one prompt, two answers, no reference model, on the plain env."""
    from agents.grpo.config import GRPOConfig

    values = dict(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs=ENV_KWARGS,
        model=model,
        total_steps=1,
        prompts_per_step=1,
        group_size=2,
        max_new_tokens=2,
        beta=0.0,
        log_samples_every=0,
    )
    config = GRPOConfig(**{**values, **overrides})
    return build_test_run(config, run_dir, agent="grpo").trainer


def build_test_run(config, run_dir: Path, **options):
    """:func:`agents.build.build_run` as ``perception-r1 train`` builds a run, into ``run_dir``, without
    progress bars and on the one torch thread the tests run on."""
    from agents.build import build_run

    return build_run(config, run_dir=run_dir, progress=False, threads=1, **options)


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every weight of ``model``."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_help() -> str:
    """``perception-r1 train --help`` from the installed console script, as a user reads it, on one line
    (argparse wraps the help at the terminal's width, which would split the phrases a test looks for)."""
    console = Path(sys.executable).with_name("perception-r1")
    done = subprocess.run([str(console), "train", "--help"], capture_output=True, text=True, check=True)
    return " ".join(done.stdout.split())


def launch(args: list[str], ranks: int) -> str:
    """``perception-r1 args`` in a new process, or under torchrun with ``ranks`` gloo ranks; its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if ranks == 1:
        command = [sys.executable, "-m", "agents.cli", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   "-m", "agents.cli", *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


# Data-parallel runs (tests/agents/test_distributed*.py): dapo (token-level: needs the global token
# count), a KL term, micro-batches (gradient accumulation without sync), a schedule: every path where
# sharding could change the numbers.
STEPS = 3
TRAIN = [
    "--env", "PerceptionR1/Counting-v0",
    "--env-kwargs", json.dumps({"difficulty": "easy", "answer_format": "number"}),
    "--total-steps", str(STEPS), "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "4",
    "--learning-rate", "1e-3", "--beta", "0.04", "--micro-batch-size", "4", "--loss-type", "dapo",
    "--lr-scheduler", "cosine", "--warmup-steps", "1", "--save-every", "1", "--log-samples-every", "0",
]  # fmt: skip


def train_on_ranks(model: str, out: Path, name: str, ranks: int, *extra: str) -> str:
    """:data:`TRAIN` (then ``extra``) into ``out/name`` on ``ranks`` processes; the log."""
    return launch(
        ["train", *TRAIN, "--model", model, "--output-dir", str(out), "--run-name", name, *extra], ranks
    )


def checkpoint_weights(run_dir: Path, step: int = STEPS) -> dict[str, torch.Tensor]:
    """The policy weights of ``run_dir``'s checkpoint at ``step``."""
    from safetensors.torch import load_file

    return load_file(str(run_dir / "checkpoints" / f"step-{step:06d}" / "policy" / "model.safetensors"))
