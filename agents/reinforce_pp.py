"""REINFORCE++ (Hu, 2025, arXiv:2501.03262) as verl 0.9.1 runs it: PPO's update without a critic.

Per rollout batch of B observations x G answers (N = B * G completions, T tokens, ``m`` the loss mask):

    r_t   = score * [t is the answer's last token] - beta * KL_t      KL to the frozen reference, per token
    R_t   = r_t + gamma * R_{t+1}                                      the return of each token
    A_t   = (R_t - mean(R)) / sqrt(var(R) + 1e-8)                      over every token of the global batch
    loss  = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1 - eps_low, 1 + eps_high))   (dual clip for A_t < 0)

``KL_t`` is verl's ``kl_penalty`` of the log-probs of the policy that sampled against the reference's
(verl's ``apply_kl_penalty``: the KL is folded into the reward, not added to the loss). The variant
``reinforce_plus_plus_baseline`` (verl's ``compute_reinforce_plus_plus_baseline_outcome_advantage``) takes
each answer's summed reward minus its group's mean, the same for every token of the answer, then whitens it
alike. The whitening (verl's ``masked_whiten``: unbiased variance) replaces PPO's critic: one mean and one
std for the whole batch, every rank's tokens included. ``rho_t = pi / pi_old``: 1 with one iteration per
batch, where the loss is REINFORCE's ``-A_t log pi``; the clipping acts from the second iteration on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from agents.base import Agent
from agents.config import TrainConfig, opt
from agents.losses import Loss, masked_mean
from agents.rollout import RolloutBatch

ESTIMATORS = ("reinforce_plus_plus", "reinforce_plus_plus_baseline")
# verl's algorithm.kl_penalty names: k1 (kl), |k1| (abs), k2 (mse), k3 (low_var_kl)
KL_PENALTIES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3")
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


@dataclass
class ReinforcePPConfig(TrainConfig):
    """TrainConfig plus REINFORCE++'s options, by verl's names (``algorithm.*``, ``actor_rollout_ref.actor.*``)."""

    adv_estimator: str = opt(
        "reinforce_plus_plus",
        "reinforce_plus_plus: each token's discounted return, whitened over the batch; "
        "reinforce_plus_plus_baseline: each answer's reward minus its group's mean, whitened over the batch.",
        choices=ESTIMATORS,
    )
    beta: float = opt(
        0.001,
        "Weight of the per-token KL to the frozen reference, subtracted from the reward (verl's "
        "algorithm.kl_ctrl.kl_coef with use_kl_in_reward; 0 = no KL and no reference model is loaded).",
        minimum=0,
    )
    kl_penalty: str = opt(
        "kl",
        "verl's KL estimator of the reward's penalty: kl / k1 (log p - log q), abs, mse / k2, low_var_kl / k3.",
        choices=KL_PENALTIES,
    )
    gamma: float = opt(
        1.0,
        "Discount of the returns over the answer's tokens (verl's algorithm.gamma).",
        minimum=0,
        maximum=1,
    )
    num_iterations: int = opt(
        1,
        "Policy updates per rollout batch (verl's ppo_epochs; 1: the ratio is 1, clipping never acts).",
        minimum=1,
    )
    clip_ratio_low: float = opt(0.2, "Ratios below 1 - clip_ratio_low stop pushing down.", minimum=0)
    clip_ratio_high: float = opt(0.2, "Ratios above 1 + clip_ratio_high stop pushing up.", minimum=0)
    clip_ratio_c: float = opt(
        3.0, "Dual clip: a negative advantage's loss is capped at -A x clip_ratio_c.", exclusive_minimum=1
    )
    loss_agg_mode: str = opt(
        "token-mean",
        "Aggregation (verl's loss_agg_mode): token-mean (over every token of the batch), seq-mean-token-mean "
        "(over each answer's tokens, then over answers), seq-mean-token-sum (each answer's sum, over answers).",
        choices=LOSS_AGG_MODES,
    )

    @property
    def uses_reference(self) -> bool:
        """The KL in the reward (``beta != 0``) needs the frozen reference model."""
        return self.beta != 0


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """verl's per-token KL estimate ``[N, T]`` of the sampling policy (``logp``) against the reference."""
    log_ratio = logp - ref_logp
    if kind in ("kl", "k1"):
        return log_ratio
    if kind == "abs":
        return log_ratio.abs()
    if kind in ("mse", "k2"):
        return 0.5 * log_ratio.square()
    if kind in ("low_var_kl", "k3"):
        # Schulman's k3 of q/p, bounded as verl bounds it: exp of a log-ratio beyond 20 overflows float16/32
        reverse = (-log_ratio).clamp(-20, 20)
        return (torch.exp(reverse) - reverse - 1).clamp(-10, 10)
    raise ValueError(f"kl_penalty must be one of {KL_PENALTIES}, got {kind!r}")


def token_rewards(
    scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None, beta: float
) -> torch.Tensor:
    """``[N, T]``: each answer's score ``[N]`` on its last token of ``mask``, minus ``beta`` x ``kl`` on every
    token of it (verl: the reward manager's token-level scores, then ``apply_kl_penalty``). A NaN log-prob is
    left to reach the loss, where the update refuses it with its likely cause."""
    if not torch.isfinite(scores).all():
        raise ValueError("rewards contain NaN or inf")
    mask = mask.to(torch.float32)
    last = (mask.cumsum(dim=1) == mask.sum(dim=1, keepdim=True)) & mask.bool()  # one-hot; none if empty
    rewards = scores.to(torch.float32).unsqueeze(1) * last
    if kl is not None and beta != 0:
        rewards = rewards - beta * kl.to(torch.float32) * mask
    return rewards


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``[N, T]`` ``R_t = r_t + gamma R_{t+1}`` over the tokens of ``mask``; a masked token has return 0 and
    passes the running return on unchanged (a gap in the mask, e.g. tool output, is skipped over)."""
    mask = mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        value = rewards[:, t] + gamma * running
        returns[:, t] = value * mask[:, t]
        running = torch.where(mask[:, t].bool(), value, running)
    return returns


def whiten(
    values: torch.Tensor, mask: torch.Tensor, total: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
) -> torch.Tensor:
    """``[N, T]`` ``(values - mean) / sqrt(var + 1e-8)`` over the tokens of ``mask``, zero elsewhere; the variance
    unbiased (verl's ``masked_whiten``). ``total`` sums over ranks (``Parallel.all_sum``): the mean and the
    variance are the global batch's. Fewer than two tokens: the variance is taken as 0 (verl raises)."""
    mask = mask.to(values.dtype)
    count = total(mask.sum())
    mean = total((values * mask).sum()) / count.clamp(min=1)
    centred = values - mean
    squares = total((centred.square() * mask).sum())
    variance = squares / (count - 1) if count > 1 else torch.zeros_like(squares)
    return centred * torch.rsqrt(variance + 1e-8) * mask


def reinforce_pp_advantages(
    rewards: torch.Tensor,  # [N, T] token_rewards
    mask: torch.Tensor,  # [N, T]
    gamma: float = 1.0,
    group_size: int | None = None,  # the baseline variant: G answers per group, observation-major
    total: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> torch.Tensor:
    """``[N, T]`` REINFORCE++'s advantages (verl's ``compute_reinforce_plus_plus_outcome_advantage``), or with
    ``group_size`` its baseline variant's (each answer's summed reward minus its group's mean, on every token;
    a group of one keeps its reward, as verl)."""
    if rewards.ndim != 2 or rewards.shape != mask.shape:
        raise ValueError(
            f"rewards and mask must both be [N, T], got {tuple(rewards.shape)} and {tuple(mask.shape)}"
        )
    if group_size is None:
        return whiten(discounted_returns(rewards, mask, gamma), mask, total)
    if rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} answers are not groups of {group_size}")
    sums = rewards.sum(dim=1).view(-1, group_size)  # [B, G]
    centred = sums - sums.mean(dim=1, keepdim=True) if group_size > 1 else sums
    return whiten(centred.reshape(-1, 1) * mask.to(rewards.dtype), mask, total)


def clipped_policy_loss(
    logp: torch.Tensor,  # [n, T] under the policy being trained (with grad)
    old_logp: torch.Tensor,  # [n, T] under the policy that sampled
    advantages: torch.Tensor,  # [n, T]
    mask: torch.Tensor,  # [n, T]
    config: ReinforcePPConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, T]`` verl's vanilla PPO loss per token (clipped ratio; dual clip where ``A < 0``) and ``[n, T]``
    whether its clip acted (verl's ``pg_clipfrac`` counts these)."""
    ratio = torch.exp((logp - old_logp).clamp(-20, 20))  # bounded as verl: a stale old_logp cannot overflow
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - config.clip_ratio_low, 1 + config.clip_ratio_high)
    surrogate = torch.maximum(unclipped, clipped)
    dual = torch.minimum(surrogate, -advantages * config.clip_ratio_c)
    per_token = torch.where(advantages < 0, dual, surrogate)
    return per_token, (clipped > unclipped) & mask.bool()


class ReinforcePPAgent(Agent):
    """REINFORCE++: token-level returns with the KL in the reward, whitened over the batch; PPO's clipped loss."""

    config: ReinforcePPConfig
    name = "reinforce_pp"
    config_class = ReinforcePPConfig

    @property
    def iterations(self) -> int:
        return self.config.num_iterations

    @property
    def keeps_old_logprobs(self) -> bool:
        """The reward's KL is the sampling policy's: scored before the update, as verl's ``old_log_prob``."""
        return super().keeps_old_logprobs or self.config.uses_reference

    def update_advantages(self, batch: RolloutBatch, mask, old_logp, ref_logp) -> torch.Tensor:
        c = self.config
        kl = kl_penalty(old_logp, ref_logp, c.kl_penalty) if c.uses_reference else None
        rewards = token_rewards(batch.rewards.flatten().to(mask.device), mask, kl, c.beta)
        group_size = c.group_size if c.adv_estimator == "reinforce_plus_plus_baseline" else None
        return reinforce_pp_advantages(rewards, mask, c.gamma, group_size, total=self.parallel.all_sum)

    def loss(self, logp, advantages, mask, old_logp, ref_logp):
        c = self.config
        mask = mask.to(logp.dtype)
        per_token, clipped = clipped_policy_loss(logp, old_logp, advantages.to(logp.dtype), mask, c)
        if c.loss_agg_mode == "token-mean":
            value, mean_over = masked_mean(per_token, mask), "tokens"
        elif c.loss_agg_mode == "seq-mean-token-mean":
            value, mean_over = masked_mean(per_token, mask, dim=1).mean(), "answers"
        else:
            value, mean_over = (per_token * mask).sum(dim=1).mean(), "answers"
        metrics = {"loss": float(value.detach()), "clip_fraction": float(masked_mean(clipped.float(), mask))}
        if ref_logp is not None:  # the reward's KL per token, as the advantages saw it
            metrics["kl"] = float(masked_mean(kl_penalty(old_logp, ref_logp, c.kl_penalty), mask))
        return Loss(value, metrics, mean_over)
