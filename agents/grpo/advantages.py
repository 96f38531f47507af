"""Group-relative advantages: each answer is judged against its G siblings (GDPO: each reward component apart)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.config import SetupError
from agents.grpo.config import SCALE_REWARDS
from agents.losses import zero_std_fraction
from agents.rollout import EpisodeGroup

# zero_std_fraction: the groups GRPO cannot learn from (agents/demo/run.py imports it from here)
__all__ = [
    "batch_standardized",
    "component_rewards",
    "group_advantages",
    "normalized_component_sum",
    "zero_std_fraction",
]


def group_advantages(
    rewards: torch.Tensor,
    *,
    scale: str = "group",
    eps: float = 1e-4,
    batch_rewards: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(r - mean_group) / (std + eps)`` for rewards shaped ``[B, G]``, with TRL's ``scale_rewards``.

    The std, by ``scale``:

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


def component_rewards(groups: Sequence[EpisodeGroup], names: Sequence[str]) -> torch.Tensor:
    """``[B, G, K]``: each answer's reward components ``names`` from the env's ``info["reward_components"]``.

    A name the env does not report raises, listing those it does (the components are the task's: detection
    reports format, f1, label, iou, fp_fn and diagnostics such as n_pred)."""
    rows = []
    for group in groups:
        row = []
        for info in group.infos:
            reported = info.get("reward_components") or {}
            missing = [name for name in names if not isinstance(reported.get(name), (int, float))]
            if missing:  # a setting that cannot work: one line from the command line, as other such errors
                raise SetupError(
                    f"reward_weights (--reward-weights) names reward components the env does not report: {', '.join(missing)}; "
                    f"it reports {', '.join(sorted(reported)) or 'none'}"
                )
            row.append([float(reported[name]) for name in names])
        rows.append(row)
    values = torch.tensor(rows, dtype=torch.float32).reshape(len(groups), -1, len(names))
    if not torch.isfinite(values).all():
        raise ValueError("reward components contain NaN or inf")
    return values


def normalized_component_sum(
    components: torch.Tensor, weights: torch.Tensor, eps: float = 1e-4
) -> torch.Tensor:
    """``[B, G]``: GDPO's first step, each component ``[B, G, K]`` standardised within its group (unbiased
    std, as TRL; a unanimous component gives 0), then the weighted sum over the K components ``weights [K]``.

    Standardising each component apart keeps a component with a small spread (e.g. format, nearly always 1)
    from being drowned by one with a large spread (GDPO, Liu et al. 2026)."""
    if components.ndim != 3 or components.shape[2] != weights.shape[0]:
        raise ValueError(
            f"components must be [B, G, K] with K = {weights.shape[0]}, got {tuple(components.shape)}"
        )
    if components.shape[1] < 2:
        return torch.zeros(components.shape[:2])
    centred = components - components.mean(dim=1, keepdim=True)
    std = components.std(dim=1, keepdim=True)  # [B, 1, K]
    return (centred / (std + eps) * weights.to(components.dtype)).sum(dim=-1)


def batch_standardized(values: torch.Tensor, batch_values: torch.Tensor | None = None, eps: float = 1e-4):
    """``(values - mean) / (std + eps)`` with the mean and (unbiased) std of ``batch_values`` (default
    ``values``; in a data-parallel run the global batch's): GDPO's second step, TRL's ``normalize_then_sum``."""
    everyone = values if batch_values is None else batch_values
    if everyone.numel() < 2:
        return torch.zeros_like(values)
    return (values - everyone.mean()) / (everyone.std() + eps)
