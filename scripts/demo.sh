#!/usr/bin/env bash
# Set-up (if needed) + the main job: an offline GRPO training run on built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/perception-r1 demo "$@"
