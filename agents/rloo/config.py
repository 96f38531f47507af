"""RLOO options."""

from __future__ import annotations

from dataclasses import dataclass

from agents.config import KL_ESTIMATORS, TrainConfig, opt, require

LOSS_TYPES = ("sequence", "sequence_mean", "token")


@dataclass
class RLOOConfig(TrainConfig):
    """TrainConfig plus the RLOO objective (REINFORCE, leave-one-out baseline)."""

    loss_type: str = opt(
        "sequence",
        "Aggregation: sequence (sum of an answer's token log-probs = its log-prob, mean over answers; "
        "the RLOO paper), sequence_mean (mean over each answer's tokens, then over answers; as grpo), "
        "token (mean over all tokens of the batch; as dapo).",
        choices=LOSS_TYPES,
    )
    beta: float = opt(
        0.0,
        "Weight of the per-token KL to the frozen reference model (0 = no reference model is loaded).",
        minimum=0,
    )
    kl_estimator: str = opt("k3", "KL estimator: k3 (>= 0, lower variance) or k1.", choices=KL_ESTIMATORS)
    normalize_advantages: bool = opt(
        False, "Divide the batch's advantages by their std (variance reduction; off in the paper)."
    )

    @property
    def uses_reference(self) -> bool:
        """A KL term (``beta != 0``) needs the frozen reference model."""
        return self.beta != 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self, "group_size", "RLOO's baseline is the mean of the other answers of the group", minimum=2
        )
