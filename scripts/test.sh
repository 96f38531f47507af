#!/usr/bin/env bash
# Set-up (if needed) + the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test of report.html (tests/evaluation/test_report_browser.py) drives Debian's Chromium: install
# it when missing and when root; if that fails, the test skips and says why.
if ! command -v chromium >/dev/null && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 ||
    echo "scripts/test.sh: apt-get could not install chromium; the browser test will skip" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
