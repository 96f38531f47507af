"""RLOO: REINFORCE whose baseline for each answer is the mean reward of the group's other G-1 answers.

Per rollout batch of B observations x G answers (N = B * G completions, T tokens):

    A_i  = r_i - 1/(G-1) * sum_{j != i} r_j   =   G/(G-1) * (r_i - mean_group)
    loss = -A_i * log pi(answer_i)            (+ beta * KL to a frozen reference, per token)

The baseline never uses r_i itself, so the gradient stays unbiased; unlike GRPO
there is no division by the group std and no ratio clipping (one on-policy update
per batch). The masked mean and the KL estimator are shared (agents/losses.py).
``pi`` and the reference are scored at the sampling temperature (``Agent.logprobs``).
"""

from __future__ import annotations

import torch

from agents.base import Agent
from agents.losses import Loss, kl_to_reference, masked_mean
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
) -> Loss:
    """REINFORCE loss ``-A * log pi`` (+ ``beta`` x KL), aggregated per ``loss_type``; unpacks as
    ``loss, metrics`` (``token``: a mean over the batch's tokens, the others over its answers)."""
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
    return Loss(loss, metrics, "tokens" if loss_type == "token" else "answers")


class RLOOAgent(Agent):
    """REINFORCE Leave-One-Out: one on-policy gradient step per rollout batch."""

    config: RLOOConfig
    name = "rloo"
    config_class = RLOOConfig

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """[B, G] leave-one-out advantages; ``normalize_advantages``: divided by the global batch's std."""
        advantages = leave_one_out_advantages(rewards)
        if self.config.normalize_advantages:
            everyone = self.parallel.all_gather_rows(advantages)
            advantages = advantages / (everyone.std() + 1e-8) if everyone.numel() > 1 else advantages
        return advantages

    def loss(self, logp, advantages, mask, old_logp, ref_logp):
        c = self.config
        return rloo_loss(logp, advantages, mask, c.loss_type, c.beta, ref_logp, c.kl_estimator)
