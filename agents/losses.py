"""What every algorithm's loss shares: masked means, the KL to the reference, the groups without signal.

Shapes: ``N`` completions, ``T`` completion tokens (right-padded); a mask is 1 on completion tokens.
"""

from __future__ import annotations

import torch

from agents.config import KL_ESTIMATORS


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1; an all-masked row gives 0, not NaN."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def kl_to_reference(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate ``[N, T]`` of KL(policy || reference) from sampled tokens.

    ``k1 = log p - log q`` (unbiased, can be negative); ``k3 = q/p - log(q/p) - 1``
    (unbiased, always >= 0, lower variance; Schulman's estimator used by the paper).
    """
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        log_ratio = ref_logp - logp
        return torch.exp(log_ratio) - log_ratio - 1
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def zero_std_fraction(rewards: torch.Tensor, atol: float = 1e-8) -> float:
    """Fraction of groups (rows of ``[B, G]``) whose rewards are all equal: no learning signal.

    Rising towards 1 is the earliest sign that the policy collapsed to one answer.
    """
    spread = rewards.max(dim=1).values - rewards.min(dim=1).values
    return float((spread <= atol).float().mean())
