"""Rollout engines: what samples the G answers of each observation (``docs/rollouts.md``).

- ``transformers``: ``policy.generate`` (transformers' ``generate``, prefill once); the training model's weights.
- ``fast``: prefill once, a static KV cache, the decode step replayed as a CUDA graph; the training model's
  weights. The same tokens as ``transformers`` for the same seeds.
- ``vllm``: a colocated ``vllm.LLM`` (when vllm is installed); its own copy of the weights, sent after each
  update. Samples with vLLM's generator (seeded per answer), not the same tokens.
- ``auto``: ``fast`` where it can decode the model, else ``transformers``.

Every engine is a :class:`~agents.rollout.RolloutEngine`: ``generate(observations, G, Sampling, seeds) ->
Rollout`` and ``load_weights(state_dict)``.
"""

from __future__ import annotations

from typing import Any

from agents.config import SetupError
from agents.rollout import Policy, RolloutEngine

__all__ = ["ENGINE_NAMES", "make_engine"]

ENGINE_NAMES = ("auto", "fast", "transformers", "vllm")


def make_engine(name: str, policy: Policy, **options: Any) -> RolloutEngine:
    """The engine called ``name`` (``--rollout-engine``) over ``policy``; ``options`` go to its constructor.

    ``auto``: ``fast`` where it can decode the policy's model (a QwenVLPolicy with sdpa or eager attention),
    else ``transformers``."""
    if name == "auto":
        from agents.engines.fast import unsupported_reason

        name = "transformers" if unsupported_reason(policy) else "fast"
    if name == "transformers":
        from agents.engines.transformers_engine import TransformersEngine

        return TransformersEngine(policy, **options)
    if name == "fast":
        from agents.engines.fast import FastEngine

        return FastEngine(policy, **options)
    if name == "vllm":
        from agents.engines.vllm_engine import VLLMEngine

        return VLLMEngine(policy, **options)
    raise SetupError(f"--rollout-engine must be one of {', '.join(ENGINE_NAMES)}, got {name!r}")
