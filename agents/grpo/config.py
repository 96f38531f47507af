"""GRPO options (defaults follow Perception-R1, Yu et al. 2025, and its official code, linkangheng/PR1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.config import KL_ESTIMATORS, TrainConfig, opt, require

if TYPE_CHECKING:  # the loss imports torch; the options (CLI flags, YAML) do not need it
    from agents.grpo.loss import LossSettings

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOConfig(TrainConfig):
    """TrainConfig plus the GRPO objective."""

    num_iterations: int = opt(
        1, "Policy updates per rollout batch (1 = the paper: the ratio is 1, clipping never acts).", minimum=1
    )
    loss_type: str = opt(
        "grpo",
        "Aggregation: grpo (per-sequence mean, the paper), dapo (token-level), dr_grpo.",
        choices=LOSS_TYPES,
    )
    epsilon_low: float = opt(
        0.2, "Lower ratio clip: ratios below 1 - epsilon_low stop pushing down.", minimum=0
    )
    epsilon_high: float = opt(0.2, "Upper ratio clip (DAPO's clip-higher uses e.g. 0.28).", minimum=0)
    beta: float = opt(
        0.04, "Weight of the KL to the frozen reference model (0 = no reference model is loaded).", minimum=0
    )
    kl_estimator: str = opt("k3", "KL estimator: k3 (paper, >= 0) or k1.", choices=KL_ESTIMATORS)
    use_bias_correction_kl: bool = opt(
        False,
        "Weigh each token's KL by the probability ratio pi/pi_old (TRL's use_bias_correction_kl, "
        "DeepSeek-V3.2): the unbiased gradient of the reverse KL; it changes the gradient even with "
        "num_iterations 1.",
    )
    scale_rewards: str = opt(
        "group",
        "Divide the group-centred rewards by a std (TRL's scale_rewards): group (each group's, the paper), "
        "batch (that of all the step's rewards) or none (centring only, Dr. GRPO).",
        choices=SCALE_REWARDS,
    )
    advantage_eps: float = opt(
        1e-4,
        "Added to the group std before dividing (> 0: a unanimous group's std is 0).",
        exclusive_minimum=0,
    )

    def __post_init__(self) -> None:
        if isinstance(self.scale_rewards, bool):  # runs saved when it was a bool: True = group, False = none
            self.scale_rewards = "group" if self.scale_rewards else "none"
        super().__post_init__()
        require(
            self,
            "group_size",
            "GRPO scores each answer against the others of its group: with one, "
            "every advantage is 0 and the weights never move",
            minimum=2,
        )

    def loss_settings(self) -> LossSettings:
        from agents.grpo.loss import LossSettings

        return LossSettings(
            loss_type=self.loss_type,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            beta=self.beta,
            kl_estimator=self.kl_estimator,
            bias_correction_kl=self.use_bias_correction_kl,
            max_completion_length=self.max_new_tokens,
        )
