"""GRPO options (defaults follow Perception-R1, Yu et al. 2025, and its official code, linkangheng/PR1).

The variants take TRL 1.16's ``GRPOConfig`` names and defaults where the meaning is the same
(``agents/grpo/variants.py`` holds their maths, ``docs/grpo-variants.md`` lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.config import KL_ESTIMATORS, SetupError, TrainConfig, opt, require
from agents.grpo.loss_types import CLIPPED_LOSS_TYPES, LOSS_TYPES, SAMPLING_CORRECTION_MODES

if TYPE_CHECKING:  # the loss imports torch; the options (CLI flags, YAML) do not need it
    from agents.grpo.loss import LossSettings

SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
MULTI_OBJECTIVE_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


@dataclass
class GRPOConfig(TrainConfig):
    """TrainConfig plus the GRPO objective."""

    num_iterations: int = opt(
        1, "Policy updates per rollout batch (1 = the paper: the ratio is 1, clipping never acts).", minimum=1
    )
    loss_type: str = opt(
        "grpo",
        "The policy term and its aggregation (TRL's loss_type): grpo (clipped, per-sequence mean; the paper), "
        "dapo (clipped, mean over the batch's tokens), dr_grpo (clipped, sum / (N x max_new_tokens)), bnpo "
        "(clipped, mean over each micro-batch's tokens: equal to dapo when micro_batch_size is 0), cispo "
        "(MiniMax-M1: REINFORCE weighted by the ratio capped at epsilon_high, gradient through log-probs "
        "only; token mean), sapo (a soft sigmoid gate instead of clipping; per-sequence mean), luspo "
        "(GSPO's sequence objective times each answer's length; needs importance_sampling_level sequence), "
        "vespo (REINFORCE weighted by a Gamma function of the sequence ratio; token mean).",
        choices=LOSS_TYPES,
    )
    epsilon_low: float = opt(
        0.2, "Lower ratio clip (TRL's epsilon): ratios below 1 - epsilon_low stop pushing down.", minimum=0
    )
    epsilon_high: float = opt(
        0.2,
        "Upper ratio clip (TRL's epsilon_high; DAPO's clip-higher uses e.g. 0.28). With loss_type cispo it is the cap of the "
        "ratio itself (TRL, ScaleRL's epsilon_max; ScaleRL uses 5.0) and must be >= 1.",
        minimum=0,
    )
    delta: float = opt(
        0.0,
        "Two-sided clipping (TRL's delta, INTELLECT-2): the ratio is also capped at delta, so a negative "
        "advantage cannot push an already large ratio without bound; 0 = off (TRL's None). When set: > 1 "
        "(TRL recommends > 1 + epsilon_high); clipped loss types only.",
        minimum=0,
    )
    importance_sampling_level: str = opt(
        "token",
        "Where the ratio pi/pi_old is taken (TRL's importance_sampling_level): token (one per token) or "
        "sequence (GSPO: exp of the mean of a completion's log-ratios, one per completion; GSPO's setup is "
        "loss_type grpo: with dapo, bnpo, dr_grpo or cispo each completion weighs by its length, as TRL warns).",
        choices=IMPORTANCE_SAMPLING_LEVELS,
    )
    sapo_temperature_pos: float = opt(
        1.0,
        "loss_type sapo (TRL's sapo_temperature_pos): the gate's temperature for positive advantages.",
        exclusive_minimum=0,
    )
    sapo_temperature_neg: float = opt(
        1.05,
        "loss_type sapo (TRL's sapo_temperature_neg): the gate's temperature for the others.",
        exclusive_minimum=0,
    )
    vespo_k_pos: float = opt(
        2.0, "loss_type vespo (TRL's vespo_k_pos): power k of the weight, advantages >= 0.", minimum=0
    )
    vespo_lambda_pos: float = opt(
        3.0, "loss_type vespo (TRL's vespo_lambda_pos): decay lambda, advantages >= 0.", exclusive_minimum=0
    )
    vespo_k_neg: float = opt(
        3.0, "loss_type vespo (TRL's vespo_k_neg): power k of the weight, advantages < 0.", minimum=0
    )
    vespo_lambda_neg: float = opt(
        2.0, "loss_type vespo (TRL's vespo_lambda_neg): decay lambda, advantages < 0.", exclusive_minimum=0
    )
    mask_truncated_completions: bool = opt(
        False,
        "Leave out of the loss the completions cut at max_new_tokens before a stop token (TRL's "
        "mask_truncated_completions, DAPO): their reward judges an unfinished answer.",
    )
    top_entropy_quantile: float = opt(
        1.0,
        "Train only on the tokens whose entropy is in the top fraction of each micro-batch's (TRL's "
        "top_entropy_quantile, 'Beyond the 80/20 rule' uses 0.2; 1 = every token, 0 = the highest only).",
        minimum=0,
        maximum=1,
    )
    entropy_coef: float = opt(
        0.0,
        "Entropy bonus (TRL's entropy_coef): the loss minus entropy_coef x the mean entropy of the policy's "
        "distribution over the completion tokens that learn (those of top_entropy_quantile), a token mean "
        "whatever loss_type, so that it keeps the policy from collapsing to near-deterministic answers; 0 = off. "
        "The entropies come from the training forward's logits at the sampling temperature.",
    )
    use_adaptive_entropy: bool = opt(
        False,
        "Adaptive entropy control (TRL's use_adaptive_entropy, Skywork-OR1): entropy_coef is the starting "
        "coefficient, moved each optimiser step by entropy_coef_delta (up when that step's mean token entropy "
        "was <= entropy_target, else down) within [entropy_coef_min, entropy_coef_max], and applied only while "
        "the last step's entropy is <= entropy_target.",
    )
    entropy_coef_min: float = opt(
        0.0, "use_adaptive_entropy: the coefficient's lower bound (TRL's entropy_coef_min).", minimum=0
    )
    entropy_coef_max: float = opt(
        1.0, "use_adaptive_entropy: the coefficient's upper bound (TRL's entropy_coef_max).", minimum=0
    )
    entropy_coef_delta: float = opt(
        0.005, "use_adaptive_entropy: the coefficient's step (TRL's entropy_coef_delta).", minimum=0
    )
    entropy_target: float = opt(
        0.2,
        "use_adaptive_entropy: the mean token entropy in nats at or below which the bonus acts (TRL's "
        "entropy_target; a language model's is often 2-10 nats, so set it near the entropy seen early on).",
        minimum=0,
    )
    vllm_importance_sampling_correction: bool = opt(
        False,
        "Correct for the rollout engine sampling from (numerically) another distribution than the trainer "
        "scores (TRL's vllm_importance_sampling_correction): the policy term is weighted by pi_old / "
        "pi_engine from the engine's sampling log-probs (the fast and transformers engines'; vLLM's at "
        "temperature 1 or greedy). An engine that gives none leaves it off, with one warning. Off by default: "
        "TRL's default True acts only with vLLM, and the default engines here agree with the trainer.",
    )
    vllm_importance_sampling_mode: str = opt(
        "sequence_mask",
        "TRL's vllm_importance_sampling_mode: token_* (a weight per token) or sequence_* (exp of the sum of "
        "a completion's token log-differences); *_truncate clamps the weight to [clip_min, clip_max], *_mask "
        "sets it to 0 outside (that token or completion drops out of the policy term).",
        choices=SAMPLING_CORRECTION_MODES,
    )
    vllm_importance_sampling_clip_max: float = opt(
        3.0,
        "Upper bound of the correction weight (TRL's vllm_importance_sampling_clip_max, formerly "
        "vllm_importance_sampling_cap).",
        exclusive_minimum=0,
    )
    vllm_importance_sampling_clip_min: float = opt(
        0.0,
        "Lower bound of the correction weight (TRL's vllm_importance_sampling_clip_min; 0 = none, TRL's None).",
        minimum=0,
    )
    off_policy_mask_threshold: float = opt(
        0.0,
        "Off-policy sequence masking (TRL's off_policy_mask_threshold, DeepSeek-V3.2's delta, eq. 9; TRL "
        "suggests 0.5): a completion with a negative advantage whose mean token KL from the policy that "
        "sampled it (log pi_sampler - log pi, the engine's log-probs where it gives them) exceeds this leaves "
        "the policy term; 0 = off (TRL's None). Acts only off-policy: num_iterations > 1, or an engine that "
        "samples from another distribution.",
        minimum=0,
    )
    beta: float = opt(
        0.04, "Weight of the KL to the frozen reference model (0 = no reference model is loaded).", minimum=0
    )
    sync_ref_model: bool = opt(
        False,
        "Move the KL's reference model towards the policy every ref_model_sync_steps optimiser steps (TRL's "
        "sync_ref_model, TR-DPO): ref = alpha * policy + (1 - alpha) * ref. Needs beta > 0; full fine-tuning "
        "(LoRA's reference is the base weights the policy shares), and --parallel ddp under torchrun.",
    )
    ref_model_mixup_alpha: float = opt(
        0.6,
        "sync_ref_model: the policy's share alpha in the mix (TRL's ref_model_mixup_alpha; 1 = copy the policy).",
        minimum=0,
        maximum=1,
    )
    ref_model_sync_steps: int = opt(
        512,
        "sync_ref_model: mix every this many optimiser steps (TRL's ref_model_sync_steps; with num_iterations "
        "k, a rollout batch is k optimiser steps).",
        minimum=1,
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
    multi_objective_aggregation: str = opt(
        "sum_then_normalize",
        "TRL's multi_objective_aggregation: sum_then_normalize (the env's reward, scaled per scale_rewards) or "
        "normalize_then_sum (GDPO: each reward component of reward_weights standardised within its group, "
        "weighted, summed, then standardised over the batch; scale_rewards is not read).",
        choices=MULTI_OBJECTIVE_AGGREGATIONS,
    )
    reward_weights: dict = opt(
        {},
        "normalize_then_sum: the env's reward components (info['reward_components']) and their weights, JSON, "
        'e.g. \'{"format": 1, "f1": 1, "label": 1, "iou": 1}\' for detection (TRL\'s reward_weights, one per '
        "reward function).",
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
        problems = self._variant_problems()
        if problems:
            raise SetupError("; ".join(problems))

    # C901 kept: independent checks of option pairs, each appending its message, read top to bottom
    def _variant_problems(self) -> list[str]:  # noqa: C901
        """What is wrong with the combination of the variant options (each option alone is checked already)."""
        problems = []
        if self.delta and self.delta <= 1:
            problems.append(f"delta (--delta) must be 0 (off) or > 1, got {self.delta!r}: it caps the ratio")
        if self.delta and self.loss_type not in CLIPPED_LOSS_TYPES:
            problems.append(
                f"delta (--delta) caps the ratio of PPO's clipped surrogate, which loss_type {self.loss_type} "
                f"has not; it applies to {', '.join(CLIPPED_LOSS_TYPES)}"
            )
        if self.loss_type == "cispo" and self.epsilon_high < 1:
            problems.append(
                f"loss_type cispo caps the ratio itself at epsilon_high (--epsilon-high; TRL, ScaleRL's "
                f"epsilon_max), not at 1 + epsilon_high: {self.epsilon_high} would scale even on-policy "
                "gradients down; use >= 1, e.g. 5.0 (ScaleRL)"
            )
        if self.loss_type == "luspo" and self.importance_sampling_level != "sequence":
            problems.append(
                "loss_type luspo is GSPO's sequence objective scaled by length: set "
                "--importance-sampling-level sequence (the LUSPO paper; TRL only warns)"
            )
        if self.loss_type == "vespo" and self.importance_sampling_level != "token":
            problems.append(
                "loss_type vespo takes its own sequence-level weight from the token log-ratios: keep "
                "--importance-sampling-level token (TRL only warns)"
            )
        if self.vllm_importance_sampling_clip_min >= self.vllm_importance_sampling_clip_max:
            problems.append(
                f"vllm_importance_sampling_clip_min ({self.vllm_importance_sampling_clip_min}) must be below "
                f"vllm_importance_sampling_clip_max ({self.vllm_importance_sampling_clip_max})"
            )
        if (
            self.vllm_importance_sampling_correction
            and self.loss_type == "vespo"
            and not self.vllm_importance_sampling_mode.startswith("token")
        ):
            problems.append(
                "loss_type vespo takes the engine correction into its sequence weight token by token: set "
                "--vllm-importance-sampling-mode token_truncate or token_mask (as TRL requires)"
            )
        if self.sync_ref_model:
            problems.extend(self._reference_sync_problems())
        if self.use_adaptive_entropy and self.entropy_coef_min > self.entropy_coef_max:
            problems.append(
                f"entropy_coef_min ({self.entropy_coef_min}) must be <= entropy_coef_max ({self.entropy_coef_max})"
            )
        if self.multi_objective_aggregation == "normalize_then_sum":
            if not self.reward_weights:
                problems.append(
                    "multi_objective_aggregation normalize_then_sum needs --reward-weights: which reward "
                    'components to standardise and sum, e.g. \'{"format": 1, "f1": 1}\''
                )
            bad = {
                k: v
                for k, v in self.reward_weights.items()
                if isinstance(v, bool) or not isinstance(v, (int, float))
            }
            if bad:
                problems.append(
                    f"reward_weights (--reward-weights) must map component names to numbers, got {bad}"
                )
        elif self.reward_weights:
            problems.append(
                "reward_weights (--reward-weights) are read by multi_objective_aggregation normalize_then_sum "
                "only (the env's reward already weighs its components)"
            )
        return problems

    def _reference_sync_problems(self) -> list[str]:
        """Where ``sync_ref_model`` has no reference it could move (TRL refuses the first two alike)."""
        problems = []
        if self.beta == 0:
            problems.append(
                "sync_ref_model (--sync-ref-model) moves the KL's reference model, which beta 0 does not load: "
                "set --beta > 0 or leave it off"
            )
        if self.lora_r:
            problems.append(
                "sync_ref_model (--sync-ref-model) cannot run with LoRA (--lora-r): the reference is the base "
                "weights the policy shares, so moving it would move the policy too"
            )
        return problems

    @property
    def reads_sampling_logprobs(self) -> bool:
        """The engine correction and the off-policy mask read the rollout engine's sampling log-probs."""
        return self.vllm_importance_sampling_correction or self.off_policy_mask_threshold > 0

    @property
    def needs_entropies(self) -> bool:
        """top_entropy_quantile and the entropy bonus read each position's entropy from the training forward."""
        return self.top_entropy_quantile < 1 or self.entropy_coef != 0 or self.use_adaptive_entropy

    @property
    def uses_reference(self) -> bool:
        """A KL term (``beta != 0``) needs the frozen reference model."""
        return self.beta != 0

    def loss_settings(self) -> LossSettings:
        from agents.grpo.loss import LossSettings

        return LossSettings(
            loss_type=self.loss_type,
            epsilon_low=self.epsilon_low,
            epsilon_high=self.epsilon_high,
            delta=self.delta or None,
            importance_sampling_level=self.importance_sampling_level,
            sapo_temperature_pos=self.sapo_temperature_pos,
            sapo_temperature_neg=self.sapo_temperature_neg,
            vespo_k_pos=self.vespo_k_pos,
            vespo_lambda_pos=self.vespo_lambda_pos,
            vespo_k_neg=self.vespo_k_neg,
            vespo_lambda_neg=self.vespo_lambda_neg,
            beta=self.beta,
            kl_estimator=self.kl_estimator,
            bias_correction_kl=self.use_bias_correction_kl,
            max_completion_length=self.max_new_tokens,
            sampling_correction_mode=(
                self.vllm_importance_sampling_mode if self.vllm_importance_sampling_correction else None
            ),
            sampling_correction_min=self.vllm_importance_sampling_clip_min,
            sampling_correction_max=self.vllm_importance_sampling_clip_max,
            off_policy_mask_threshold=self.off_policy_mask_threshold or None,
            entropy_coef=self.entropy_coef,
        )
