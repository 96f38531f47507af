#!/usr/bin/env bash
# Creates .venv with everything the demo, the tests and the benchmarks need.
# Idempotent: re-running after setup.cfg changes reinstalls, otherwise it is a no-op.
# torch is pinned to 2.13.0, the CPU wheel this project is developed and tested on;
# it is installed FIRST so that the package's torch range does not pull a multi-GB
# CUDA build. GPU users: create .venv with your own torch before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.perception-r1-installed"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[train,test,bench]"
echo "$want" > "$STAMP"
