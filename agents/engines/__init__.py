"""Rollout engines: what samples the G answers of each observation (``docs/rollouts.md``).

- ``transformers``: ``policy.generate`` (transformers' ``generate``, prefill once); the training model's weights.
- ``fast``: prefill once, a static KV cache, the decode step replayed as a CUDA graph; the training model's
  weights. The same tokens as ``transformers`` for the same seeds.
- ``vllm``: a colocated ``vllm.LLM`` (when vllm is installed); its own copy of the weights, sent after each
  update. Samples with vLLM's generator (seeded per answer), not the same tokens.
- ``auto``: the fastest engine that can decode the model *and* has passed on this kind of device
  (:data:`VERIFIED_ON_CUDA`): on CPU ``fast`` where it can decode the model, else ``transformers``; on CUDA
  only the paths ``scripts/gpu-check.sh`` has passed on a GPU.

Every engine is a :class:`~agents.rollout.RolloutEngine`: ``generate(observations, G, Sampling, seeds) ->
Rollout`` and ``load_weights(state_dict)``. An engine that can, fills ``Rollout.sampling_logprobs``.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.config import ROLLOUT_ENGINES, SetupError
from agents.rollout import Policy, RolloutEngine

__all__ = ["VERIFIED_ON_CUDA", "auto_engine", "make_engine"]

# The engine paths that have passed on a GPU, and where: ``auto`` picks only these on CUDA (in this order of
# preference). ``fast`` joins once scripts/gpu-check.sh's engine-parity tests (fp32 same tokens, bf16
# agreement) and its CUDA-graph test pass on a GPU (docs/rollouts.md, "GPU check").
VERIFIED_ON_CUDA: dict[str, str] = {
    "transformers": "H100 80GB, Qwen2-VL-2B size, bf16: 2.47 s a GRPO step against TRL's 5.13 s (issue 14)",
}
# auto's order of preference among the engines that can decode the policy
_PREFERENCE = ("fast", "transformers")


def auto_engine(policy: Policy) -> tuple[str, str]:
    """``(engine, why)``: what ``--rollout-engine auto`` runs for ``policy``.

    On CUDA only an engine of :data:`VERIFIED_ON_CUDA`; elsewhere ``fast`` where it can decode the model."""
    from agents.engines.fast import unsupported_reason

    problem = unsupported_reason(policy)
    usable = [name for name in _PREFERENCE if name != "fast" or problem is None]
    device = _device_type(policy)
    if device == "cuda":
        verified = [name for name in usable if name in VERIFIED_ON_CUDA]
        name = verified[0] if verified else "transformers"
        skipped = [n for n in usable[: usable.index(name)] if n not in VERIFIED_ON_CUDA]
        why = f"verified on CUDA: {VERIFIED_ON_CUDA.get(name, 'none verified; the reference path')}"
        if skipped:
            why += f"; {', '.join(skipped)} not yet verified on a GPU (scripts/gpu-check.sh)"
        return name, why
    name = usable[0]
    return name, "fast decodes this model" if name == "fast" else f"fast cannot: {problem}"


def make_engine(name: str, policy: Policy, *, config: Any = None, **options: Any) -> RolloutEngine:
    """The engine called ``name`` (``--rollout-engine``) over ``policy``; ``options`` go to its constructor.

    ``config``: the run's training options (a ``TrainConfig``), from which an engine with its own copy of the
    model (vLLM) sizes itself: ``max_new_tokens``, ``temperature``, ``prompts_per_step`` x ``group_size``.
    ``auto``: :func:`auto_engine`."""
    if name == "auto":
        name, _ = auto_engine(policy)
    if name == "transformers":
        from agents.engines.transformers_engine import TransformersEngine

        return TransformersEngine(policy, **options)
    if name == "fast":
        from agents.engines.fast import FastEngine

        return FastEngine(policy, **options)
    if name == "vllm":
        from agents.engines.vllm_engine import VLLMEngine, options_from_config

        return VLLMEngine(policy, **{**options_from_config(config), **options})
    raise SetupError(f"--rollout-engine must be one of {', '.join(ROLLOUT_ENGINES)}, got {name!r}")


def _device_type(policy: Policy) -> str:
    try:
        return torch.device(policy.device).type
    except (AttributeError, StopIteration, TypeError):  # a policy without parameters or a device
        return "cpu"
