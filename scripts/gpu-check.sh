#!/usr/bin/env bash
# The GPU check (docs/rollouts.md, "GPU check"): one command on one GPU, under 8 minutes.
#
#   bash scripts/gpu-wheels.sh     # here, with the package index: the wheels the GPU image lacks -> .gpu-wheels/
#   bash scripts/gpu-check.sh      # there, offline: prints a markdown table for docs/rollouts.md
#
# 1. installs .gpu-wheels/*.whl with pip --no-index --no-deps into a target folder, first on PYTHONPATH (the GPU
#    image has transformers 5.17, below our floor, and no gymnasium, pycocotools, rapidfuzz, nltk, trl, pytest);
# 2. the engine tests on CUDA (tests/agents/test_engines_cuda.py): float32 same tokens as transformers' generate,
#    the bfloat16 agreement rate, the CUDA-graph path, the fast engine's sampling log-probs;
# 3. benchmarks/grpo_step.py --preset 2b (Qwen2-VL-2B size, random weights, bf16) per engine and against TRL;
# 4. the table (scripts/gpu_check_table.py). Only when its parity rows pass may agents/engines/__init__.py's
#    VERIFIED_ON_CUDA take "fast" (then --rollout-engine auto picks the fast engine on CUDA).
#
# Environment: PYTHON (python3), GPU_WHEELS (.gpu-wheels), GPU_CHECK_DIR (where results go: $OUT if set, else
# gpu-check-results), GPU_BENCH_TIMEOUT (330 s), GPU_TEST_TIMEOUT (240 s).
set -uo pipefail  # not -e: every step runs and reports, the table says what failed
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-.gpu-wheels}
RESULTS=${GPU_CHECK_DIR:-${OUT:-gpu-check-results}}
SITE=${GPU_SITE:-${TMPDIR:-/tmp}/perception-r1-gpu-site}
mkdir -p "$RESULTS"
: >"$RESULTS/engine-figures.jsonl"

# the engine tests run on CUDA (each names every parametrisation of the function)
ENGINE_TESTS=(
    tests/agents/test_engines_cuda.py::test_fp32_fast_engine_draws_the_transformers_tokens_on_cuda
    tests/agents/test_engines_cuda.py::test_bf16_engines_agree_on_most_answers
    tests/agents/test_engines_cuda.py::test_cuda_graph_is_captured_once_and_replayed
    tests/agents/test_engines_cuda.py::test_fast_sampling_logprobs_are_the_trainers_on_cuda
)

step() { echo; echo "== gpu-check: $* ($(date -u +%H:%M:%S))"; }

step "device"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check: no CUDA device visible to $PYTHON; nothing to check" >&2
    exit 2
fi
"$PYTHON" -c "import torch; print(torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"

step "wheels from $WHEELS"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    rm -rf "$SITE"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl ||
        { echo "gpu-check: installing the wheels failed" >&2; exit 3; }
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE (first on PYTHONPATH)"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "no wheels in $WHEELS (bash scripts/gpu-wheels.sh makes them): using the image's packages"
fi
"$PYTHON" - <<'EOF' || { echo "gpu-check: the packages above cannot run the project" >&2; exit 3; }
import importlib, sys
for name in ("transformers", "gymnasium", "pytest", "trl"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as error:  # trl is only for the comparison: reported, not required
        print(f"{name} missing ({type(error).__name__}: {error})")
        if name != "trl":
            sys.exit(1)
import agents.policies  # refuses transformers below the floor, by name
EOF
TRL_FLAG=()
"$PYTHON" -c "import trl.trainer.grpo_trainer" 2>/dev/null || TRL_FLAG=(--skip-trl)

step "engine tests on CUDA"
GPU_CHECK_RESULTS="$RESULTS/engine-figures.jsonl" timeout "${GPU_TEST_TIMEOUT:-240}" \
    "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml="$RESULTS/engine-tests.xml" "${ENGINE_TESTS[@]}"
echo "engine tests: exit $?"

step "benchmarks/grpo_step.py --preset 2b (per engine, ${TRL_FLAG[*]:-and TRL})"
timeout "${GPU_BENCH_TIMEOUT:-330}" "$PYTHON" benchmarks/grpo_step.py --preset 2b --device cuda \
    --dtype bfloat16 --engines transformers,fast --repeats 3 --skip-trl-nockpt "${TRL_FLAG[@]}" \
    2>&1 | tee "$RESULTS/grpo_step-2b.txt"
echo "benchmark: exit ${PIPESTATUS[0]}"

step "table for docs/rollouts.md"
"$PYTHON" scripts/gpu_check_table.py "$RESULTS" | tee "$RESULTS/table.txt"  # markdown
