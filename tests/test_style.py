"""The tree is formatted by ``ruff format`` and clean under ``ruff check`` (pyproject.toml), with the
ruff the test extra locks (the one beside this Python: the venv's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def ruff(*args: str) -> subprocess.CompletedProcess:
    if not RUFF.is_file():
        pytest.fail(f"no ruff beside {sys.executable}: pip install -c requirements/lock.txt '.[test]'")
    return subprocess.run([str(RUFF), *args, "."], cwd=ROOT, capture_output=True, text=True)


def test_the_tree_is_formatted():
    done = ruff("format", "--check")
    assert done.returncode == 0, f"run: ruff format .\n{done.stdout}{done.stderr}"


def test_the_tree_passes_the_linter():
    done = ruff("check")
    assert done.returncode == 0, f"run: ruff check --fix .\n{done.stdout}{done.stderr}"
