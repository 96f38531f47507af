"""verl 0.9.1 in a virtual environment of its own (.venv-verl, built once and kept), for the tests that run
verl's own code: tests/integrations/test_verl_install.py (the README's verl command) and
tests/agents/test_reinforce_pp.py (REINFORCE++ against verl's functions). verl is not in this project's .venv:
it pins transformers<5.11 (this project needs >= 5.18)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.documented import ROOT

VENV = ROOT / ".venv-verl"
VERL = "verl==0.9.1"
# verl goes in with --no-deps (its transformers pin would fail beside this torch); then what the modules this test
# runs import (config, reward loading and managers, dataset, qwen-vl-utils), at verl 0.9.1's bounds
DEPENDENCIES = (
    "hydra-core",
    "omegaconf",
    "tensordict>=0.8,<=0.10.0,!=0.9.0",
    "ray",
    "transformers>=5.5.3,<5.11,!=5.6.0",
    "datasets",
    "pandas",
    "pyarrow>=19",
    "codetiming",
    "dill",
    "aiohttp",
    "pybind11",
    "pylatexenc",
    "qwen-vl-utils",
    "setuptools>=68",  # to install this project (editable) without build isolation
)


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)}: {(done.stderr or done.stdout)[-1500:]}")


def verl_python() -> Path:
    """The python of .venv-verl, built when missing or made for other requirements; skips the test if pip fails."""
    torch = f"torch=={version('torch')}"  # this venv's build (a CPU wheel here), not a multi-GB CUDA one
    wanted = hashlib.sha256(json.dumps([VERL, torch, DEPENDENCIES]).encode()).hexdigest()[:16]
    python, stamp = VENV / "bin" / "python", VENV / ".requirements"
    if stamp.is_file() and stamp.read_text() == wanted and python.is_file():
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120
        )
        _pip(python, torch, VERL, "--no-deps")
        _pip(python, torch, *DEPENDENCIES)
        _pip(python, "--no-build-isolation", "-e", str(ROOT))  # the base package: no extras
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(VENV, ignore_errors=True)
        pytest.skip(f"{VERL} could not be installed here: {error}")
    stamp.write_text(wanted)
    return python
