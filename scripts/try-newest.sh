#!/usr/bin/env bash
# Try the project against the NEWEST releases of its dependencies (run by hand, not in CI).
#
# Copies this checkout (tracked + untracked, not ignored files) into a temp dir, makes a throwaway venv there,
# installs torch ($TORCH_SPEC, default torch==2.13.0, the local CPU wheel), then the project's
# [train,test,bench] extras with `--upgrade --upgrade-strategy eager` and WITHOUT requirements/lock.txt,
# and reports:
#   1. every package whose version differs from requirements/lock.txt (lock -> newest),
#   2. `pip check`,
#   3. the test suite: python -m pytest -q -p no:cacheprovider [ARGS] (ARGS default: -x), its summary
#      and failing test ids.
# Neither .venv nor the checkout is touched; the temp dir is removed on exit. Exit status: pytest's.
#
#   scripts/try-newest.sh                      # stop at the first failure
#   scripts/try-newest.sh -k lora              # any pytest arguments (they replace -x)
#   TORCH_SPEC=torch scripts/try-newest.sh     # newest torch pip may install here (mind CUDA wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=requirements/lock.txt
[[ -f $LOCK ]] || { echo "missing $LOCK" >&2; exit 1; }
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"
args=("$@"); (( ${#args[@]} )) || args=(-x)

tmp="$(mktemp -d -t try-newest.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src"
git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$tmp/src"
# the venv is the copy's own .venv, where the README's commands (and the tests that run them) look
"$PYTHON" -m venv "$tmp/src/.venv"
py="$tmp/src/.venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check)
quiet() { "$@" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; return 1; }; }

echo "== installing $TORCH_SPEC, then the newest of everything else"
quiet "${pip[@]}" install --upgrade pip
quiet "${pip[@]}" install "$TORCH_SPEC"
# eager upgrades must not replace the torch just chosen (the newest may be a multi-GB CUDA build)
"$py" -c 'from importlib.metadata import version; print("torch==" + version("torch"))' > "$tmp/keep-torch.txt"
quiet "${pip[@]}" install --upgrade --upgrade-strategy eager -c "$tmp/keep-torch.txt" \
  -e "$tmp/src[train,test,bench]"
# scripts/setup.sh (run by scripts/demo.sh in the README tests) would reinstall the locked versions: mark
# this venv as set up, the way setup.sh does
(cd "$tmp/src" && cat setup.cfg pyproject.toml "$LOCK" | sha256sum | cut -c1-16) > "$tmp/src/.venv/.perception-r1-installed"

echo
echo "== versions that differ from $LOCK (lock -> newest)"
"${pip[@]}" list --format=freeze > "$tmp/newest.txt"
"$py" - "$LOCK" "$tmp/newest.txt" <<'EOF'
import re, sys
def read(path):
    pins = {}
    for line in open(path):
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.split("+")[0]  # 2.13.0+cpu == 2.13.0
    return pins
lock, newest = read(sys.argv[1]), read(sys.argv[2])
rows = [(n, lock.get(n, "(not locked)"), newest.get(n, "(not installed)"))
        for n in sorted((lock.keys() | newest.keys()) - {"perception-r1"}) if lock.get(n) != newest.get(n)]
for row in rows:
    print(f"  {row[0]:<24} {row[1]:>14} -> {row[2]}")
print(f"  ({len(rows)} of {len(lock)} locked packages differ)" if rows else "  none")
EOF

echo
echo "== pip check"
"${pip[@]}" check || true

echo
echo "== python -m pytest -q -p no:cacheprovider ${args[*]}"
rc=0
(cd "$tmp/src" && "$py" -m pytest -q -p no:cacheprovider "${args[@]}") > "$tmp/pytest.log" 2>&1 || rc=$?
tail -n 1 "$tmp/pytest.log"
grep -E '^(FAILED|ERROR) ' "$tmp/pytest.log" | cut -c1-220 | sed 's/^/  /' || true
exit "$rc"
