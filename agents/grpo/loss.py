"""The GRPO objective, token by token, with its aggregation variants.

Shapes: ``N = B * G`` completions, ``T`` completion tokens (right-padded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.grpo.config import LOSS_TYPES
from agents.losses import kl_to_reference, masked_mean


@dataclass(frozen=True)
class LossSettings:
    """The knobs of :func:`grpo_loss` (a subset of GRPOConfig)."""

    loss_type: str = "grpo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.04
    kl_estimator: str = "k3"
    bias_correction_kl: bool = False  # KL weighted by the ratio pi / pi_old (TRL's use_bias_correction_kl)
    max_completion_length: int = 768  # Dr. GRPO's constant normaliser


def grpo_loss(
    logp: torch.Tensor,  # [N, T] log-prob of each sampled token under the policy being trained
    old_logp: torch.Tensor,  # [N, T] the same under the policy that sampled (no grad)
    advantages: torch.Tensor,  # [N]
    mask: torch.Tensor,  # [N, T] 1 for completion tokens
    settings: LossSettings,
    ref_logp: torch.Tensor | None = None,  # [N, T] under the frozen reference, when beta > 0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy-gradient loss plus ``beta`` x KL, aggregated per ``settings.loss_type``.

    ``settings.bias_correction_kl``: each token's KL is multiplied by the (differentiable) ratio
    ``pi / pi_old``, an importance weight for tokens sampled from ``pi_old``: its gradient is then the
    unbiased gradient of the reverse KL (TRL's ``use_bias_correction_kl``). The logged ``kl`` is the
    weighted one, as TRL's.

    * ``grpo``: mean over each completion's tokens, then over completions (the paper);
    * ``dapo``: mean over all tokens of the batch (long answers weigh more);
    * ``dr_grpo``: sum over tokens / (N * max_completion_length), no length bias.

    With one update per rollout (``old_logp == logp``) the ratio is 1, clipping
    never acts, and the loss equals ``-mean(advantage)`` + the KL term.
    """
    if settings.loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {settings.loss_type!r}")
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype).unsqueeze(1)  # [N, 1]
    ratio = torch.exp(logp - old_logp)  # [N, T]
    clipped = torch.clamp(ratio, 1 - settings.epsilon_low, 1 + settings.epsilon_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # [N, T]
    kl = None
    if settings.beta != 0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs ref_logp from the reference model")
        kl = kl_to_reference(logp, ref_logp, settings.kl_estimator)
        if settings.bias_correction_kl:
            kl = kl * ratio
        per_token = per_token + settings.beta * kl

    if settings.loss_type == "grpo":
        loss = masked_mean(per_token, mask, dim=1).mean()
    elif settings.loss_type == "dapo":
        loss = masked_mean(per_token, mask)
    else:  # dr_grpo
        loss = (per_token * mask).sum() / (mask.shape[0] * settings.max_completion_length)

    with torch.no_grad():
        low = (ratio < 1 - settings.epsilon_low) & (adv < 0)
        high = (ratio > 1 + settings.epsilon_high) & (adv > 0)
        metrics = {
            "loss": float(loss),
            "clip_fraction": float(masked_mean((low | high).to(logp.dtype), mask)),
            "clip_fraction_low": float(masked_mean(low.to(logp.dtype), mask)),
            "clip_fraction_high": float(masked_mean(high.to(logp.dtype), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
        }
        if kl is not None:
            metrics["kl"] = float(masked_mean(kl, mask))
    return loss, metrics
