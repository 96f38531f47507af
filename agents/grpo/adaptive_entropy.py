"""Adaptive entropy control (Skywork-OR1, He et al. 2025; TRL 1.16's ``use_adaptive_entropy``).

The entropy bonus's coefficient (``entropy_coef``, its starting value) moves once per optimiser step: up by
``entropy_coef_delta`` when the policy's mean token entropy over that step's tokens was at or below
``entropy_target``, else down, within ``[entropy_coef_min, entropy_coef_max]``; and it is applied only while the
last step's entropy is at or below the target (none before the first step has been measured). So the bonus
engages when the policy is collapsing and fades while it explores. The entropy is measured over the tokens the
bonus acts on (every completion token, or ``top_entropy_quantile``'s), summed over the step's micro-batches and
ranks: one mean for the whole step, as TRL's window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class AdaptiveEntropy:
    """The controller's state: the coefficient, the last step's entropy, and this step's running sums."""

    coef: float  # the current coefficient (TRL's mutable entropy_coef)
    target: float
    delta: float
    minimum: float
    maximum: float
    last_entropy: float = math.inf  # inf: nothing measured yet, so no bonus on the first step (TRL)
    _window: torch.Tensor | None = None  # [2] float32: entropy sum, token count of this step's micro-batches

    def applied(self) -> float:
        """The coefficient this step's micro-batches apply: the same for all of them (set at the last step)."""
        return self.coef if self.last_entropy <= self.target else 0.0

    def observe(self, entropies: torch.Tensor, acting: torch.Tensor) -> None:
        """Add a micro-batch's entropies ``[n, T]`` over the tokens the bonus acts on (``acting`` ``[n, T]``)."""
        stats = torch.stack([(entropies * acting).sum(), acting.sum()]).detach().float()
        self._window = stats if self._window is None else self._window + stats

    def step(self, all_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> None:
        """At an optimiser step: the step's entropy over every rank (``all_sum``), the coefficient moved."""
        if self._window is None:
            return
        totals = all_sum(self._window)
        entropy = float(totals[0] / totals[1].clamp(min=1.0))
        if entropy <= self.target:
            self.coef = min(self.coef + self.delta, self.maximum)
        else:
            self.coef = max(self.coef - self.delta, self.minimum)
        self.last_entropy = entropy
        self._window = None

    def state_dict(self) -> dict[str, float | None]:
        """For a checkpoint (JSON: an unmeasured entropy is None)."""
        return {
            "coef": self.coef,
            "last_entropy": None if math.isinf(self.last_entropy) else self.last_entropy,
        }

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.coef = float(state["coef"])
        last = state["last_entropy"]
        self.last_entropy = math.inf if last is None else float(last)
