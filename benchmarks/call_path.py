"""The agents/ files a reader crosses in one GRPO step of ``perception-r1 train`` (ARCHITECTURE.md's path).

    .venv/bin/python benchmarks/call_path.py                 # a tiny model built in a temporary folder
    .venv/bin/python benchmarks/call_path.py --model runs/tiny --list

A one-step run on the tiny model (2 prompts x G=2, 4 new tokens) in this process, with every Python
function call traced (``sys.setprofile``): a file counts when one of its functions runs (a module's import-time
code does not count). Two sets: the whole command (parsing, set-up, the step, its checkpoint) and the step
alone, from ``Trainer.collect``'s start to the end of ``Agent.update`` (the optimiser step). Lines: each
file's whole length, what a reader would open.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "agents"

ENV_KWARGS = '{"difficulty": {"base": "easy", "count_query": "all"}, "answer_format": "number"}'


def train_argv(model: Path, out: Path) -> list[str]:
    """``perception-r1 train``'s arguments for one small GRPO step on ``model``, written under ``out``."""
    return [
        "train", "--env", "PerceptionR1/Counting-v0", "--env-kwargs", ENV_KWARGS, "--model", str(model),
        "--total-steps", "1", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4",
        "--output-dir", str(out), "--run-name", "call-path", "--quiet",
    ]  # fmt: skip


@contextmanager
def step_window(flag: list[bool]):
    """Sets ``flag[0]`` from ``Trainer.collect``'s start to the end of ``Agent.update`` (patched meanwhile)."""
    from agents.base import Agent
    from agents.trainer import Trainer

    collect, update = Trainer.collect, Agent.update

    def traced_collect(self, step):
        flag[0] = True
        return collect(self, step)

    def traced_update(self, batch):
        try:
            return update(self, batch)
        finally:
            flag[0] = False

    Trainer.collect, Agent.update = traced_collect, traced_update
    try:
        yield
    finally:
        Trainer.collect, Agent.update = collect, update


def trace_train(argv: list[str], package: Path = AGENTS) -> tuple[set[Path], set[Path]]:
    """The files under ``package`` whose functions run during ``perception-r1 argv``, and during its step."""
    from agents.cli import main

    prefix = str(package) + "/"
    whole: set[Path] = set()
    step: set[Path] = set()
    in_step = [False]

    def profile(frame, event, arg):
        code = frame.f_code
        if event != "call" or code.co_name == "<module>" or not code.co_filename.startswith(prefix):
            return
        whole.add(Path(code.co_filename))
        if in_step[0]:
            step.add(Path(code.co_filename))

    with step_window(in_step):
        sys.setprofile(profile)
        try:
            main(argv)
        finally:
            sys.setprofile(None)
    return whole, step


def summary(label: str, files: set[Path], listed: bool = False) -> str:
    """``label: N files, L lines``, and with ``listed`` each file (relative to the repository) and its lines."""
    lines = {f: len(f.read_text(encoding="utf-8").splitlines()) for f in sorted(files)}
    text = f"{label}: {len(files)} files, {sum(lines.values()):,} lines"
    if listed:
        text += "".join(f"\n    {f.relative_to(ROOT)} {n}" for f, n in lines.items())
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: a new tiny model)")
    parser.add_argument("--list", action="store_true", help="list each file and its lines")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from agents.policies.tiny_model import build_tiny_model

            model = build_tiny_model(Path(tmp) / "tiny", seed=0)
        whole, step = trace_train(train_argv(model, Path(tmp) / "runs"))
    print(summary("CLI -> optimiser step", whole, args.list))
    print(summary("collect -> update", step, args.list))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
