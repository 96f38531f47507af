"""The markdown table of a GPU check (scripts/gpu-check.sh), to paste into docs/rollouts.md.

    python scripts/gpu_check_table.py RESULTS_DIR

reads what the check left in RESULTS_DIR: ``engine-tests.xml`` (pytest's JUnit report), ``engine-figures.jsonl``
(the figures tests/agents/test_engines_cuda.py recorded) and ``grpo_step-2b.txt`` (benchmarks/grpo_step.py's
output). A part that is missing reads "not run".
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# benchmarks/grpo_step.py's line per engine (print_engine_table)
ENGINE_LINE = re.compile(
    r"^\s+(?P<engine>\w+)\s+generate (?P<generate>[\d.]+) s\s+(?P<tokens>[\d.]+) sampled tokens/s.*?"
    r"step (?P<step>[\d.]+) s(?:.*?bandwidth (?P<bandwidth>[\d.]+)% of the limit)?.*?same tokens: (?P<same>\w+)"
)
TRL_PER_ENGINE = re.compile(r"TRL / our step per engine: (?P<pairs>.*)$")
TRL_STEP = re.compile(r"^\(c\) TRL GRPOTrainer step \[s\]: (?P<step>[\d.]+)")


def test_rows(results: Path) -> list[tuple[str, str]]:
    """``(test id, passed / FAILED / skipped)`` from the JUnit report."""
    report = results / "engine-tests.xml"
    if not report.exists():
        return []
    rows = []
    for case in ElementTree.parse(report).iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "FAILED"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        rows.append((case.get("name", "?"), outcome))
    return rows


def figures(results: Path) -> list[dict]:
    path = results / "engine-figures.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def benchmark_rows(text: str) -> list[dict]:
    """Per engine: generation, sampled tokens/s, bandwidth %, whole step, TRL / step, same tokens."""
    ratios: dict[str, str] = {}
    for line in text.splitlines():
        match = TRL_PER_ENGINE.search(line)
        if match:
            ratios = dict(pair.split(" ") for pair in match["pairs"].split("  ") if " " in pair)
    rows = []
    for line in text.splitlines():
        match = ENGINE_LINE.match(line)
        if match:
            row = match.groupdict()
            row["trl"] = ratios.get(row["engine"], "")
            rows.append(row)
    return rows


def table(results: Path) -> str:
    lines = ["| check | setting | result |", "|---|---|---|"]
    tests = test_rows(results)
    lines += [
        f"| {name.split('[')[0]} | {name.partition('[')[2].rstrip(']')} | {outcome} |"
        for name, outcome in tests
    ]
    for figure in figures(results):
        if figure.get("check") == "bf16 agreement":
            lines.append(
                f"| bf16 agreement (fast vs transformers) | {figure['arch']} | "
                f"{figure['agreed']}/{figure['total']} answers identical ({100 * figure['rate']:.1f}%) |"
            )
        if figure.get("check") == "sampling logprobs":
            lines.append(
                f"| sampling log-probs vs trainer | {figure['arch']} | max gap {figure['max_abs_gap']:.2e} |"
            )
    if not tests:
        lines.append("| engine tests | | not run |")
    lines += [
        "",
        "| setting | engine | generation [s] | sampled tokens/s | bandwidth fraction | whole step [s] | TRL / step | same tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    bench = results / "grpo_step-2b.txt"
    text = bench.read_text() if bench.exists() else ""
    rows = benchmark_rows(text)
    setting = "2B, bf16, B = 2, G = 8, 1,000-token prompts, 64 new tokens"
    for row in rows:
        bandwidth = f"{row['bandwidth']}%" if row["bandwidth"] else ""
        lines.append(
            f"| {setting} | {row['engine']} | {row['generate']} | {row['tokens']} | {bandwidth} | {row['step']} | "
            f"{row['trl'] or 'not run'} | {row['same']} |"
        )
    if not rows:
        lines.append(f"| {setting} | transformers, fast | not run | | | | | |")
    trl = next((TRL_STEP.match(line) for line in text.splitlines() if TRL_STEP.match(line)), None)
    lines.append("")
    lines.append(f"TRL GRPOTrainer step: {trl['step'] + ' s' if trl else 'not run'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python scripts/gpu_check_table.py RESULTS_DIR")
    print(table(Path(args[0])))


if __name__ == "__main__":
    main()
