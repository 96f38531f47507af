"""The rollout engines on a GPU: what ``scripts/gpu-check.sh`` runs before ``auto`` may pick the fast engine there.

Skipped without CUDA (every CPU run). On a GPU, on the tiny models of both architectures:

* float32: the fast engine (CUDA graphs) draws the same tokens as transformers' ``generate`` for the same seeds;
* bfloat16: the share of answers both engines write identically (rounding makes them part; the figure goes
  in docs/rollouts.md), which must stay above :data:`BF16_AGREEMENT_FLOOR`;
* the CUDA-graph path: captured once, replayed for the next call of the same shapes, the same tokens as the
  fast engine's eager loop;
* the fast engine's sampling log-probs equal the trainer's ``completion_logprobs`` (float32).

``GPU_CHECK_RESULTS=path`` appends each figure as a JSON line (the script's table reads them).
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from agents.engines.fast import FastEngine
from agents.engines.transformers_engine import TransformersEngine
from agents.rollout import Sampling

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu-check.sh)"
)

SEEDS = [11, 12]
SAMPLINGS = {
    "plain": Sampling(max_new_tokens=24),
    "warped": Sampling(max_new_tokens=24, temperature=0.7, top_k=5, top_p=0.9),
    "greedy": Sampling(max_new_tokens=24, do_sample=False),
}
# bf16 answers of the two engines part after the first rounding difference; below this share something is wrong
BF16_AGREEMENT_FLOOR = 0.5


def _record(check: str, **figures) -> None:
    path = os.environ.get("GPU_CHECK_RESULTS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"check": check, **figures}) + "\n")


def _cuda_policy(tiny_model_dirs, arch: str, dtype: str):
    from agents.policies.qwen_vl import QwenVLPolicy

    return QwenVLPolicy.from_pretrained(tiny_model_dirs[arch], dtype=dtype, device="cuda")


@pytest.mark.parametrize("setting", list(SAMPLINGS))
def test_fp32_fast_engine_draws_the_transformers_tokens_on_cuda(tiny_model_dirs, arch, observations, setting):
    policy = _cuda_policy(tiny_model_dirs, arch, "float32")
    sampling = SAMPLINGS[setting]
    reference = TransformersEngine(policy).generate(observations, 4, sampling, observation_seeds=SEEDS)
    engine = FastEngine(policy)
    fast = engine.generate(observations, 4, sampling, observation_seeds=SEEDS)
    same = torch.equal(fast.completion_ids, reference.completion_ids) and fast.texts == reference.texts
    _record("fp32 same tokens", arch=arch, setting=setting, same=same, graphs=engine.uses_cuda_graphs())
    assert engine.uses_cuda_graphs()
    assert same


def test_bf16_engines_agree_on_most_answers(tiny_model_dirs, arch, observations):
    policy = _cuda_policy(tiny_model_dirs, arch, "bfloat16")
    agreed = total = 0
    for sampling in SAMPLINGS.values():
        reference = TransformersEngine(policy).generate(observations, 8, sampling, observation_seeds=SEEDS)
        fast = FastEngine(policy).generate(observations, 8, sampling, observation_seeds=SEEDS)
        agreed += sum(a == b for a, b in zip(fast.texts, reference.texts))
        total += len(fast.texts)
    _record("bf16 agreement", arch=arch, agreed=agreed, total=total, rate=agreed / total)
    assert agreed / total >= BF16_AGREEMENT_FLOOR, f"{agreed}/{total} answers agree"


def test_cuda_graph_is_captured_once_and_replayed(tiny_model_dirs, arch, observations):
    policy = _cuda_policy(tiny_model_dirs, arch, "float32")
    sampling = SAMPLINGS["warped"]
    graphed = FastEngine(policy, cuda_graphs=True)
    first = graphed.generate(observations, 4, sampling, observation_seeds=SEEDS)
    graph = graphed._buffers.graph
    second = graphed.generate(observations, 4, sampling, observation_seeds=SEEDS)
    eager = FastEngine(policy, cuda_graphs=False, static_shapes=True).generate(
        observations, 4, sampling, observation_seeds=SEEDS
    )
    replayed = graph is not None and graphed._buffers.graph is graph
    same = torch.equal(first.completion_ids, second.completion_ids) and torch.equal(
        first.completion_ids, eager.completion_ids
    )
    _record("cuda graph", arch=arch, captured=graph is not None, replayed=replayed, same_as_eager=same)
    assert "CUDA graph" in graphed.describe() and replayed and same


def test_fast_sampling_logprobs_are_the_trainers_on_cuda(tiny_model_dirs, arch, observations):
    policy = _cuda_policy(tiny_model_dirs, arch, "float32")
    sampling = SAMPLINGS["warped"]
    rollout = FastEngine(policy).generate(observations, 4, sampling, observation_seeds=SEEDS)
    with torch.no_grad():
        trainer = policy.completion_logprobs(rollout, temperature=sampling.temperature)
    gap = float((rollout.sampling_logprobs - trainer).abs().max())
    _record("sampling logprobs", arch=arch, max_abs_gap=gap)
    assert gap < 1e-4
