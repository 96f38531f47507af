"""The repository stands alone: every document a file points a reader to is in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.documented import ROOT

# a path ending in .md, as written in prose, a link or a comment: docs/paper.md, (real-data.md), ../README.md
MENTION = re.compile(r"(?<![\w/.-])((?:\.\.?/)?[\w./-]*\w\.md)\b")
WRITTEN_BY_RUNS = {"table.md"}  # what `perception-r1 eval` writes, not a document


def tracked_text_files():
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in names:
        path = ROOT / name
        if (
            path.suffix in (".py", ".md", ".sh", ".cfg", ".toml")
            and path.is_file()
            and "fixtures" not in path.parts
            and path != Path(__file__)
        ):
            yield path


def test_every_mentioned_document_exists():
    missing = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for mention in MENTION.findall(line):
                if mention in WRITTEN_BY_RUNS or ("://" in line and mention in line.split("://", 1)[1]):
                    continue  # an output file, or part of a web address
                candidates = [path.parent / mention, ROOT / mention]
                if not any(c.exists() for c in candidates):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {mention}")
    assert not missing, "documents mentioned but not in the repository:\n" + "\n".join(missing)


def test_the_mention_pattern_finds_what_it_should():
    line = "see docs/paper.md, [real data](real-data.md) and ../README.md; not example.com/x.md"
    assert MENTION.findall(line)[:3] == ["docs/paper.md", "real-data.md", "../README.md"]
