"""GRPO options (defaults follow Perception-R1, Yu et al. 2025, and its official code, linkangheng/PR1)."""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from agents.config import TrainConfig, opt

if TYPE_CHECKING:  # the loss imports torch; the options (CLI flags, YAML) do not need it
    from agents.grpo.loss import LossSettings

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
KL_ESTIMATORS = ("k3", "k1")


@dataclass
class GRPOConfig(TrainConfig):
    """TrainConfig plus the GRPO objective."""

    num_iterations: int = opt(
        1, "Policy updates per rollout batch (1 = the paper: the ratio is 1, clipping never acts)."
    )
    loss_type: str = opt(
        "grpo", "Aggregation: grpo (per-sequence mean, the paper), dapo (token-level), dr_grpo.",
        choices=LOSS_TYPES,
    )
    epsilon_low: float = opt(0.2, "Lower ratio clip: ratios below 1 - epsilon_low stop pushing down.")
    epsilon_high: float = opt(0.2, "Upper ratio clip (DAPO's clip-higher uses e.g. 0.28).")
    beta: float = opt(
        0.04, "Weight of the KL to the frozen reference model (0 = no reference model is loaded)."
    )
    kl_estimator: str = opt("k3", "KL estimator: k3 (paper, >= 0) or k1.", choices=KL_ESTIMATORS)
    scale_rewards: bool = opt(True, "Divide group-centred rewards by the group std (False = Dr. GRPO).")
    advantage_eps: float = opt(1e-4, "Added to the group std before dividing.")

    @property
    def agent_name(self) -> str:
        return "grpo"

    def loss_settings(self) -> LossSettings:
        from agents.grpo.loss import LossSettings

        return LossSettings(
            loss_type=self.loss_type,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            beta=self.beta,
            kl_estimator=self.kl_estimator,
            max_completion_length=self.max_new_tokens,
        )
