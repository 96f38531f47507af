"""RLOO: REINFORCE whose baseline for each answer is the mean reward of the group's other G-1 answers.

Per rollout batch of B observations x G answers (N = B * G completions, T tokens):

    A_i  = r_i - 1/(G-1) * sum_{j != i} r_j   =   G/(G-1) * (r_i - mean_group)
    loss = -A_i * log pi(answer_i)            (+ beta * KL to a frozen reference, per token)

The baseline never uses r_i itself, so the gradient stays unbiased; unlike GRPO
there is no division by the group std and no ratio clipping (one on-policy update
per batch). The masked mean and the KL estimator are GRPO's (agents/grpo/loss.py).
``pi`` and the reference are scored at the sampling temperature (``Agent.logprobs``).
"""

from __future__ import annotations

from typing import Any

import torch

from agents.base import Agent, RolloutBatch
from agents.grpo.advantages import zero_std_fraction
from agents.grpo.loss import kl_to_reference, masked_mean
from agents.rloo.config import RLOOConfig


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """``r_i - mean_{j != i} r_j`` for rewards shaped ``[B, G]`` (G >= 2); equal rewards give exactly 0."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [B, G], got shape {tuple(rewards.shape)}")
    if rewards.shape[1] < 2:
        raise ValueError("the leave-one-out baseline needs G >= 2 answers per group")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf")
    rewards = rewards.to(torch.float32)
    g = rewards.shape[1]
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)  # [B, G]
    return rewards - baseline


def rloo_loss(
    logp: torch.Tensor,  # [N, T] log-prob of each sampled token under the policy (with grad)
    advantages: torch.Tensor,  # [N]
    mask: torch.Tensor,  # [N, T] 1 for completion tokens
    loss_type: str = "sequence",
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,  # [N, T] under the frozen reference, when beta > 0
    kl_estimator: str = "k3",
) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE loss ``-A * log pi`` (+ ``beta`` x KL), aggregated per ``loss_type``: ``(loss, metrics)``."""
    mask = mask.to(logp.dtype)
    per_token = -advantages.to(logp.dtype).unsqueeze(1) * logp  # [N, T]
    kl = None
    if beta != 0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs ref_logp from the reference model")
        kl = kl_to_reference(logp, ref_logp, kl_estimator)  # [N, T]
        per_token = per_token + beta * kl
    if loss_type == "sequence":
        loss = (per_token * mask).sum(dim=1).mean()
    elif loss_type == "sequence_mean":
        loss = masked_mean(per_token, mask, dim=1).mean()
    elif loss_type == "token":
        loss = masked_mean(per_token, mask)
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}")
    metrics = {"loss": float(loss.detach())}
    if kl is not None:
        metrics["kl"] = float(masked_mean(kl.detach(), mask))
    return loss, metrics


class RLOOAgent(Agent):
    """REINFORCE Leave-One-Out over a QwenVLPolicy: one on-policy gradient step per rollout batch."""

    name = "rloo"
    config: RLOOConfig
    config_class = RLOOConfig

    def __init__(self, policy: Any, config: RLOOConfig, reference_model: torch.nn.Module | None = None):
        super().__init__(policy, config)
        self.reference = self.make_reference(config.beta, reference_model)

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        c = self.config
        rollout = batch.rollout
        advantages = leave_one_out_advantages(batch.rewards).flatten()  # [N] group-major
        if c.normalize_advantages:
            everyone = self.parallel.all_gather_rows(advantages)  # the std of the global batch
            advantages = advantages / (everyone.std() + 1e-8) if everyone.numel() > 1 else advantages
        advantages = advantages.to(rollout.completion_mask.device)
        mask = rollout.completion_mask.float()  # [N, T]
        chunks = self.micro_batches(mask.shape[0])
        weights = self.chunk_weights(mask, chunks, token_level=c.loss_type == "token")
        token_weights = self.chunk_weights(mask, chunks, token_level=True)  # per-token metrics

        self.policy.model.train()
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        entropy = 0.0
        loss_sum = 0.0
        for k, idx in enumerate(chunks):
            ref = self.reference_logprobs(rollout.select(idx)) if self.reference is not None else None
            with self.accumulate(last=k == len(chunks) - 1):
                logp = self.logprobs(rollout.select(idx))  # [n_chunk, T], with grad
                loss, metrics = rloo_loss(
                    logp, advantages[idx], mask[idx], c.loss_type, c.beta, ref, c.kl_estimator
                )
                (loss * weights[k]).backward()
            loss_sum += metrics["loss"] * weights[k]
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value * (weights[k] if key == "loss" else token_weights[k])
            # E[-log p(x)] over sampled x: the tempered policy's entropy per token (with top-p / top-k, the
            # cross-entropy from the truncated sampler to it).
            entropy += float(masked_mean(-logp.detach(), mask[idx])) * token_weights[k]
        grad_norm = self.clip_and_step(step=batch.step, loss=loss_sum)
        return {
            **sums,
            "entropy": entropy,
            "grad_norm": grad_norm,
            "advantage_abs_mean": float(advantages.abs().mean()),
            "frac_reward_zero_std": zero_std_fraction(batch.rewards),
            "learning_rate": learning_rate,
        }
