#!/usr/bin/env bash
# Creates .venv with everything the demo, the tests and the benchmarks need, at the exact versions of
# requirements/lock.txt (pip constraints): a fresh clone installs what the suite was last run with, and an
# upstream release cannot break it. setup.cfg keeps the ranges the package is known to work with.
# Idempotent: re-running after setup.cfg, pyproject.toml or the lock changes reinstalls, otherwise a no-op.
# torch is installed FIRST so that nothing pulls a multi-GB CUDA build (2.13.0 is the CPU wheel this project
# is developed on). GPU users: create .venv with your own torch before running this; it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
LOCK=requirements/lock.txt
STAMP="$VENV/.perception-r1-installed"
want="$(cat setup.cfg pyproject.toml "$LOCK" requirements/video.txt | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
constraints="$VENV/constraints.txt"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  grep -v '^torch==' "$LOCK" > "$constraints"  # a torch already here (e.g. a CUDA build) stays
else
  cp "$LOCK" "$constraints"
fi
pip=("$VENV/bin/python" -m pip install --quiet -c "$constraints")
"${pip[@]}" pip setuptools  # the build tool too: the package is built with it, not in isolation
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${pip[@]}" torch
"${pip[@]}" --no-build-isolation -e ".[train,test,bench,viz]"
# RecordVideo's writer, at exact versions and without its pillow<12 pin (requirements/video.txt says why)
"$VENV/bin/python" -m pip install --quiet --no-deps -r requirements/video.txt
echo "$want" > "$STAMP"
