#!/usr/bin/env bash
# Download, here (with the package index), the wheels scripts/gpu-check.sh installs on a GPU machine without
# one: CPython 3.12 manylinux x86_64 wheels, at requirements/lock.txt's versions, of what the GPU image lacks
# or has too old (transformers 5.17 < our floor 5.18; no gymnasium, pycocotools, rapidfuzz, nltk, trl, pytest).
# Torch, numpy, scipy, pillow and the CUDA stack stay the image's own.
#
#   bash scripts/gpu-wheels.sh            # into .gpu-wheels/ (gitignored), which travels with the checkout
#   GPU_WHEELS=/some/dir bash scripts/gpu-wheels.sh
#
# Two sets: "core" (the engine tests and our benchmark) and "trl" (TRL's GRPOTrainer for the comparison:
# trl, datasets and pyarrow/pandas, the bulk of the size). GPU_WHEEL_SETS="core" downloads the first only.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${GPU_WHEELS:-.gpu-wheels}
SETS=${GPU_WHEEL_SETS:-core trl}
PYTHON=${PYTHON:-python3}
LOCK=requirements/lock.txt

# the import closure of perception_env, agents and pytest that the image does not bring at these versions
CORE="transformers huggingface_hub hf-xet safetensors regex typer click rich shellingham markdown-it-py mdurl
Pygments annotated-doc gymnasium Farama-Notifications cloudpickle pycocotools RapidFuzz nltk joblib pytest
pluggy iniconfig"
TRL="trl accelerate datasets pyarrow pandas tzdata dill multiprocess xxhash fsspec"

pinned() {  # "name==version" from the lock (names compared as pip does: case and -/_ folded)
    local key
    key=$(echo "$1" | tr 'A-Z_' 'a-z-')
    awk -F'==' -v k="$key" '{ n = tolower($1); gsub("_", "-", n); if (n == k) print $0 }' "$LOCK"
}

requirements=()
for set in $SETS; do
    case $set in
        core) names=$CORE ;;
        trl) names=$TRL ;;
        *) echo "gpu-wheels: unknown set '$set' (core, trl)" >&2; exit 2 ;;
    esac
    for name in $names; do
        pin=$(pinned "$name")
        if [ -z "$pin" ]; then
            echo "gpu-wheels: $name is not in $LOCK" >&2
            exit 2
        fi
        requirements+=("$pin")
    done
done

mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --no-deps -d "$DEST" "${requirements[@]}"
echo "gpu-wheels: ${#requirements[@]} wheels in $DEST ($(du -sh "$DEST" | cut -f1))"
