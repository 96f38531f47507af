"""Group-relative advantages: each answer is judged against its G siblings."""

from __future__ import annotations

import torch

from agents.grpo.config import SCALE_REWARDS
from agents.losses import zero_std_fraction

# zero_std_fraction: the groups GRPO cannot learn from (agents/demo.py imports it from here)
__all__ = ["group_advantages", "zero_std_fraction"]


def group_advantages(
    rewards: torch.Tensor,
    *,
    scale: str = "group",
    eps: float = 1e-4,
    batch_rewards: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(r - mean_group) / (std + eps)`` for rewards shaped ``[B, G]``, TRL's ``scale_rewards``:

    * ``group``: the std of each group's own rewards (the paper);
    * ``batch``: the std of every reward of the batch (``batch_rewards``, the global ``[B_all, G]`` of a
      data-parallel run; default ``rewards``): no group is scaled up for being nearly unanimous;
    * ``none``: centring only (Dr. GRPO: dividing by the group std over-weights groups that are
      nearly solved or nearly hopeless).

    A group whose rewards are all equal has no signal: its advantages are exactly 0, never NaN. ``std``
    is the unbiased sample std, as the paper's code and TRL. Non-finite rewards are a bug upstream and raise.
    """
    if scale not in SCALE_REWARDS:
        raise ValueError(f"scale must be one of {SCALE_REWARDS}, got {scale!r}")
    batch_rewards = rewards if batch_rewards is None else batch_rewards
    for name, values in (("rewards", rewards), ("batch_rewards", batch_rewards)):
        if values.ndim != 2:
            raise ValueError(f"{name} must be [B, G], got shape {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise ValueError(f"{name} contain NaN or inf")
    rewards = rewards.to(torch.float32)
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    if scale == "none":
        return centred
    if scale == "group":
        if rewards.shape[1] < 2:
            return torch.zeros_like(rewards)
        std = rewards.std(dim=1, keepdim=True)  # [B, 1]
    else:
        if batch_rewards.numel() < 2:
            return torch.zeros_like(rewards)
        std = batch_rewards.to(torch.float32).std()  # scalar
    return centred / (std + eps)
