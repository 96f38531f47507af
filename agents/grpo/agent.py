"""GRPO (Shao et al., 2024) as Perception-R1 runs it, with the common variants as options."""

from __future__ import annotations

from typing import Any

import torch

from agents.base import Agent, RolloutBatch
from agents.grpo.advantages import group_advantages, zero_std_fraction
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss, masked_mean


class GRPOAgent(Agent):
    """Group-relative policy optimisation over a QwenVLPolicy.

    Per rollout batch of B observations x G answers: advantages are the
    answers' rewards standardised within their group; the policy takes
    ``num_iterations`` gradient steps on the clipped surrogate plus ``beta`` x
    KL to a frozen copy of the starting model, all at the learning rate of
    this batch (the schedule advances once per batch).
    """

    name = "grpo"
    config: GRPOConfig
    config_class = GRPOConfig

    def __init__(self, policy: Any, config: GRPOConfig, reference_model: torch.nn.Module | None = None):
        super().__init__(policy, config)
        self.reference = self.make_reference(config.beta, reference_model)

    @torch.no_grad()
    def _logprobs_no_grad(
        self, rollout: Any, chunks: list[torch.Tensor], reference: bool = False
    ) -> torch.Tensor:
        score = self.reference_logprobs if reference else self.logprobs
        return torch.cat([score(rollout.select(i)) for i in chunks])

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """[B, G] advantages of this rank's groups; ``scale_rewards="batch"``: by the global batch's std."""
        c = self.config
        everyone = self.parallel.all_gather_rows(rewards) if c.scale_rewards == "batch" else None
        return group_advantages(rewards, scale=c.scale_rewards, eps=c.advantage_eps, batch_rewards=everyone)

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        c = self.config
        settings = c.loss_settings()
        rollout = batch.rollout
        advantages = self.advantages(batch.rewards).flatten()  # [N] group-major
        advantages = advantages.to(rollout.completion_mask.device)
        mask = rollout.completion_mask.float()  # [N, T]
        chunks = self.micro_batches(mask.shape[0])
        weights = self.chunk_weights(mask, chunks, token_level=settings.loss_type == "dapo")
        token_weights = self.chunk_weights(mask, chunks, token_level=True)  # per-token metrics

        self.policy.model.train()
        old_logp = self._logprobs_no_grad(rollout, chunks) if c.num_iterations > 1 else None
        ref_logp = (
            self._logprobs_no_grad(rollout, chunks, reference=True) if self.reference is not None else None
        )

        sums: dict[str, float] = {}
        entropy = 0.0
        grad_norm = 0.0
        learning_rate = self.scheduler.get_last_lr()[0]  # the rate of every iteration on this batch
        for iteration in range(c.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for k, idx in enumerate(chunks):
                with self.accumulate(last=k == len(chunks) - 1):
                    logp = self.logprobs(rollout.select(idx))  # [n_chunk, T], with grad
                    old = old_logp[idx] if old_logp is not None else logp.detach()
                    ref = ref_logp[idx] if ref_logp is not None else None
                    loss, metrics = grpo_loss(logp, old, advantages[idx], mask[idx], settings, ref)
                    (loss * weights[k]).backward()
                loss_sum += metrics["loss"] * weights[k]
                for key, value in metrics.items():
                    weight = weights[k] if key == "loss" else token_weights[k]
                    sums[key] = sums.get(key, 0.0) + value * weight / c.num_iterations
                if iteration == 0:
                    # E[-log p(x)] over sampled x: the tempered policy's entropy per token (with top-p or
                    # top-k, the cross-entropy from the truncated sampler to it).
                    entropy += float(masked_mean(-old, mask[idx])) * token_weights[k]
            grad_norm = self.clip_and_step(
                step=batch.step, loss=loss_sum, advance_schedule=iteration == c.num_iterations - 1
            )

        return {
            **sums,
            "entropy": entropy,
            "grad_norm": grad_norm,
            "advantage_abs_mean": float(advantages.abs().mean()),
            "frac_reward_zero_std": zero_std_fraction(batch.rewards),
            "learning_rate": learning_rate,
        }
