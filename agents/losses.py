"""What every algorithm's loss shares: masked means, the KL to the reference, the groups without signal.

Shapes: ``N`` completions, ``T`` completion tokens (right-padded); a mask is 1 on completion tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from agents.config import KL_ESTIMATORS

MEANS = ("answers", "tokens")  # what a micro-batch's loss can be a mean over


class Loss:
    """A micro-batch's loss ``value`` (scalar, with grad), its ``metrics``, and what the value is a mean over:
    ``"answers"`` (every completion weighs the same) or ``"tokens"`` (every token of the whole batch does).

    The update weighs each micro-batch by its share of that unit (its completions, or its tokens among every
    rank's), so that the weighted sum of the micro-batches' losses is the loss of the whole batch: the loss
    function that chooses the aggregation says which, and nothing else has to agree with it.
    Unpacks as ``value, metrics``."""

    __slots__ = ("value", "metrics", "mean_over")

    def __init__(self, value: torch.Tensor, metrics: dict[str, float], mean_over: str):
        if mean_over not in MEANS:
            raise ValueError(f"a loss is a mean over one of {MEANS}, got {mean_over!r}")
        self.value, self.metrics, self.mean_over = value, metrics, mean_over

    def __iter__(self) -> Iterator[Any]:
        return iter((self.value, self.metrics))

    def __getitem__(self, index: int) -> Any:
        return (self.value, self.metrics)[index]


def as_loss(result: Loss | tuple[torch.Tensor, dict[str, float]]) -> Loss:
    """An algorithm's :meth:`~agents.base.Agent.loss` as a :class:`Loss`: a plain ``(value, metrics)`` is a
    mean over answers (a per-answer loss needs to say nothing more)."""
    return result if isinstance(result, Loss) else Loss(*result, mean_over="answers")


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
