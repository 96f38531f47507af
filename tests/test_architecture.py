"""The import contracts hold: ``lint-imports`` (pyproject.toml's ``[tool.importlinter]``) passes as installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports() -> subprocess.CompletedProcess:
    """``lint-imports`` beside this Python (the test extra installs it), run in the repository."""
    command = Path(sys.executable).with_name("lint-imports")
    if not command.is_file():
        pytest.fail(
            f"no lint-imports beside {sys.executable}: pip install -c requirements/lock.txt '.[test]'"
        )
    return subprocess.run(
        [str(command), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_import_contracts_are_kept():
    done = lint_imports()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
