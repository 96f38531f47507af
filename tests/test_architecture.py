"""The import contracts hold: ``lint-imports`` (pyproject.toml's ``[tool.importlinter]``) passes as installed."""

from __future__ import annotations

import ast
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


def import_graph(package: str) -> dict[str, set[str]]:
    """``module -> the package's modules it imports`` (every import statement, a function's own included)."""
    files = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:  # the module (or package) a dotted name lives in
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        here[: len(here) - node.level + 1] + ([node.module] if node.module else [])
                    )
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            found = next((known(name) for name in names if known(name)), None)
            if found and found != module:
                targets.add(found)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: each a path that comes back to its first module."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                found.append(path[path.index(target) :] + [target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_agents_has_no_import_cycle():
    graph = import_graph("agents")
    assert "agents.registry" in graph["agents.cli"] or any("agents.registry" in t for t in graph.values())
    assert cycles(graph) == []
