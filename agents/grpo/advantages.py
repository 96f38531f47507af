"""Group-relative advantages: each answer is judged against its G siblings."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, *, scale_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """``(r - mean_group) / (std_group + eps)`` for rewards shaped ``[B, G]``.

    ``scale_std=False`` keeps only the centring (Dr. GRPO: dividing by the std
    over-weights groups that are nearly solved or nearly hopeless). A group
    whose rewards are all equal has no signal: its advantages are exactly 0,
    never NaN. ``std`` is the unbiased sample std, as the paper's code and TRL.
    Non-finite rewards are a bug upstream and raise.
    """
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [B, G], got shape {tuple(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf")
    rewards = rewards.to(torch.float32)
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    if not scale_std:
        return centred
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    std = rewards.std(dim=1, keepdim=True)  # [B, 1]
    return centred / (std + eps)


def zero_std_fraction(rewards: torch.Tensor, atol: float = 1e-8) -> float:
    """Fraction of groups (rows of ``[B, G]``) whose rewards are all equal: no learning signal.

    Rising towards 1 is the earliest sign that the policy collapsed to one answer.
    """
    spread = rewards.max(dim=1).values - rewards.min(dim=1).values
    return float((spread <= atol).float().mean())
