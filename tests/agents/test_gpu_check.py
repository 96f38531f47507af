"""scripts/gpu-check.sh, checked on a CPU: its shell parses, the tests it names exist, the wheels it needs are
pinned by the lock, and its table reads what benchmarks/grpo_step.py prints."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "gpu-check.sh"
WHEELS = ROOT / "scripts" / "gpu-wheels.sh"


def _bash_array(script: Path, name: str) -> list[str]:
    body = re.search(rf"^{name}=\((.*?)^\)", script.read_text(), re.S | re.M)
    assert body, f"{script.name} has no {name}=( ... )"
    return [line.split("#")[0].strip() for line in body[1].splitlines() if line.split("#")[0].strip()]


@pytest.mark.parametrize("script", [CHECK, WHEELS], ids=lambda p: p.name)
def test_the_scripts_shell_parses(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_test_the_check_names_exists():
    ids = _bash_array(CHECK, "ENGINE_TESTS")
    assert len(ids) == 4
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *ids],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    for node in ids:
        assert any(line.startswith(node + "[") or line == node for line in collected), node


def test_every_wheel_the_gpu_needs_is_pinned_by_the_lock():
    text = WHEELS.read_text()
    names = []
    for variable in ("CORE", "TRL"):
        names += re.search(rf'^{variable}="(.*?)"', text, re.S | re.M)[1].split()
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in lock.splitlines() if "==" in line}
    for wanted in ("transformers", "trl", "gymnasium", "pycocotools", "rapidfuzz", "nltk", "pytest"):
        assert wanted in {n.lower() for n in names}, wanted
    assert [n for n in names if n.lower().replace("_", "-") not in pinned] == []


def test_the_table_reads_the_benchmarks_own_lines(policy, tmp_path):
    """The engine lines come from benchmarks.grpo_step.print_engine_table itself, so a change there shows here."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from benchmarks.grpo_step import print_engine_table

    common = dict(prefill=0.2, mean_completion_tokens=40.0, decode_steps=64.0)
    results = {
        "transformers": dict(generate=2.01, total=2.47, same_tokens=True, engine="transformers", **common),
        "fast": dict(generate=0.5, total=0.9, same_tokens=False, engine="fast", **common),
    }
    args = types.SimpleNamespace(bandwidth_gbs=3350.0, batch=2, group_size=8, repeats=3)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_engine_table(results, policy, args)
        print("    TRL / our step per engine: transformers x2.08  fast x5.70")  # run_preset's line
        print("(c) TRL GRPOTrainer step [s]: 5.130 (first step 9.000); ours 2.470; TRL / ours = x2.08")
    (tmp_path / "grpo_step-2b.txt").write_text(printed.getvalue())
    (tmp_path / "engine-figures.jsonl").write_text(
        '{"check": "bf16 agreement", "arch": "qwen2-vl", "agreed": 40, "total": 48, "rate": 0.8333}\n'
    )
    table = gpu_check_table.table(tmp_path)
    rows = [line for line in table.splitlines() if line.startswith("| 2B")]
    assert len(rows) == 2
    # 2 x 8 answers x 40 tokens / 2.01 s = 318 tokens/s; TRL's 5.13 s / 2.47 s
    assert "| transformers | 2.010 | 318 |" in rows[0] and "| 2.470 | x2.08 | yes |" in rows[0]
    assert "| fast | 0.500 | 1280 |" in rows[1] and "| 0.900 | x5.70 | NO |" in rows[1]
    assert "40/48 answers identical (83.3%)" in table
    assert "| engine tests | | not run |" in table and "TRL GRPOTrainer step: 5.130 s" in table


def test_an_empty_results_folder_reads_not_run(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    table = gpu_check_table.table(tmp_path)
    assert "| engine tests | | not run |" in table and "| transformers, fast | not run |" in table
