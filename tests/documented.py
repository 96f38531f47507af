"""The commands and Python snippets the docs give, read as a user would copy them.

Tests run these through the installed ``perception-r1`` console script in a subprocess, changing only what
the test must (flags that shorten a run, placeholders such as a data folder), never calling internals.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str


def code_blocks(path: Path, lang: str) -> list[Block]:
    """Fenced code blocks of one language in a Markdown file (indented fences included)."""
    blocks, current, start, fence_lang = [], None, 0, ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if current is None and stripped.startswith("```"):
            current, start, fence_lang, indent = (
                [],
                number,
                stripped[3:].strip(),
                len(line) - len(line.lstrip()),
            )
        elif current is not None and stripped == "```":
            if fence_lang == lang:
                blocks.append(Block(path, start, lang, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line[indent:] if line[:indent].strip() == "" else line)
    return blocks


def docstring_commands(path: Path) -> list[Command]:
    """The commands an example's module docstring shows (its indented ``python ...`` / ``perception-r1 ...``
    lines)."""
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    lines = [line.strip() for line in doc.splitlines() if line.startswith("    ")]
    block = Block(
        path, 1, "bash", "\n".join(line for line in lines if line.startswith(("python ", "perception-r1 ")))
    )
    return shell_commands(block)


def _split_comment(line: str) -> tuple[str, str]:
    """``cmd  # comment`` -> (``cmd``, ``comment``); a ``#`` inside quotes or a word is not a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


@dataclass(frozen=True)
class Command:
    text: str  # as bash runs it: continuations joined, comments dropped
    note: str  # the comments on its lines, e.g. "prints: final loss ...; saved to runs/warm"

    def promised_output(self) -> str | None:
        """What the note says the command prints (``prints: X`` up to the next ``;``/end), as a regex."""
        match = re.search(r"prints: (.+)", self.note)
        return None if match is None else expected_pattern(match.group(1))


def expected_pattern(text: str) -> str:
    """A documented output as a regex: ``...`` stands for anything, the rest is literal."""
    return ".*".join(re.escape(part.strip()) for part in text.split("..."))


def shell_commands(block: Block) -> list[Command]:
    """The block's commands: ``\\`` continuations joined, a ``for ... done`` loop kept whole."""
    commands: list[Command] = []
    pending, notes, loop_depth = "", [], 0
    for raw in block.text.splitlines():
        line, note = _split_comment(raw)
        if note:
            notes.append(note)
        if not line.strip():
            continue
        joined = (pending + " " + line.strip()) if pending else line.strip()
        if joined.endswith("\\"):
            pending = joined[:-1].rstrip()
            continue
        pending = ""
        joined = re.sub(r"\s+", " ", joined)
        if loop_depth:
            last = commands.pop()
            commands.append(Command(last.text + "\n" + joined, "; ".join([last.note, *notes]).strip("; ")))
        else:
            commands.append(Command(joined, "; ".join(notes)))
        notes = []
        loop_depth += joined.startswith("for ") - (joined == "done")
    return commands


def python_expectations(source: str) -> list[str]:
    """For each ``print(...)  # expected`` line of a snippet, in order, the expected line as a regex."""
    out = []
    for line in source.splitlines():
        code, note = _split_comment(line)
        if code.lstrip().startswith("print(") and note:
            out.append(expected_pattern(note))
    return out


def set_flag(command: str, flag: str, value: str) -> str:
    """``command`` with ``flag``'s value replaced (the flag must be there: a doc change must show here)."""
    pattern = rf"(?<=\s){re.escape(flag)}\s+\S+"
    if not re.search(pattern, command):
        raise AssertionError(f"{flag} is not in the documented command {command!r}")
    return re.sub(pattern, f"{flag} {value}", command)


def user_environment(**extra: str) -> dict[str, str]:
    """What a user's shell has: the venv's console scripts on PATH, no hub access, one thread per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONPATH", None)  # what is importable comes from the install, not from this checkout
    env.update(extra)
    return env


def user_folder(tmp: Path) -> Path:
    """A working folder where ``.venv/bin/...`` and ``examples/`` resolve as in a clone, and runs/ is written.

    (Not ``scripts/``: ``scripts/setup.sh`` would install the package from this folder.)"""
    for name in (".venv", "examples"):
        link = tmp / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    return tmp


def run_shell(command: str, cwd: Path, timeout: int = 600, **env: str) -> str:
    """Run a documented command with bash as a user would; its stdout+stderr; fails the test on error."""
    assert shutil.which("bash"), "bash is needed to run the documented commands"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=user_environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{output[-4000:]}"
    return output
