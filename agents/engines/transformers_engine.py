"""Today's rollouts: the policy's own ``generate`` (transformers' ``generate``, prefill once per group).

``Rollout.sampling_logprobs`` stays None: ``QwenVLPolicy.generate`` does not hand transformers' scores back
(the fast engine, the same tokens, gives them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.rollout import Policy, Rollout, Sampling

__all__ = ["TransformersEngine"]


class TransformersEngine:
    """Samples with ``policy.generate`` (any :class:`~agents.rollout.Policy`); shares the policy's weights."""

    name = "transformers"
    shares_weights = True

    def __init__(self, policy: Policy):
        self.policy = policy

    def generate(
        self,
        observations: Sequence[Mapping[str, Any]],
        num_samples: int,
        sampling: Sampling,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        return self.policy.generate(
            observations,
            num_samples=num_samples,
            observation_seeds=observation_seeds,
            **sampling.generate_kwargs(),
        )

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Nothing to do: ``generate`` runs the training model itself."""

    def describe(self) -> str:
        return "transformers (policy.generate)"
