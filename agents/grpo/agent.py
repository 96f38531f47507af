"""GRPO (Shao et al., 2024) as Perception-R1 runs it, with the common variants as options."""

from __future__ import annotations

import torch

from agents.base import Agent
from agents.grpo.advantages import group_advantages
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss


class GRPOAgent(Agent):
    """Group-relative policy optimisation.

    Per rollout batch of B observations x G answers: advantages are the answers' rewards standardised
    within their group; the policy takes ``num_iterations`` gradient steps on the clipped surrogate plus
    ``beta`` x KL to a frozen copy of the starting model, all at the learning rate of this batch.
    """

    config: GRPOConfig
    config_class = GRPOConfig

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """[B, G] advantages of this rank's groups; ``scale_rewards="batch"``: by the global batch's std."""
        c = self.config
        everyone = self.parallel.all_gather_rows(rewards) if c.scale_rewards == "batch" else None
        return group_advantages(rewards, scale=c.scale_rewards, eps=c.advantage_eps, batch_rewards=everyone)

    def loss(self, logp, advantages, mask, old_logp, ref_logp):
        return grpo_loss(logp, old_logp, advantages, mask, self.config.loss_settings(), ref_logp)

    @property
    def token_level_loss(self) -> bool:
        return self.config.loss_type == "dapo"

    @property
    def iterations(self) -> int:
        return self.config.num_iterations
