"""The GRPO objective, token by token: importance weight, policy term, KL, aggregation.

The variants' maths (loss types, GSPO's sequence-level weight, two-sided clipping, the high-entropy
tokens) is in ``agents/grpo/variants.py``; this module composes it as TRL 1.16's ``_compute_loss`` does.
Shapes: ``N = B * G`` completions, ``T`` completion tokens (right-padded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.grpo.loss_types import LOSS_TYPES
from agents.grpo.variants import (
    AGGREGATIONS,
    VariantSettings,
    aggregate,
    entropy_bonus,
    log_importance_weights,
    logged_mean,
    off_policy_mask,
    policy_term,
    sampling_correction,
    sampling_correction_metrics,
)
from agents.losses import Loss, kl_to_reference, masked_mean


@dataclass(frozen=True)
class LossSettings(VariantSettings):
    """The knobs of :func:`grpo_loss` (a subset of GRPOConfig)."""

    loss_type: str = "grpo"
    importance_sampling_level: str = "token"  # GSPO: "sequence"
    beta: float = 0.04
    kl_estimator: str = "k3"
    bias_correction_kl: bool = False  # KL weighted by the ratio pi / pi_old (TRL's use_bias_correction_kl)
    max_completion_length: int = 768  # Dr. GRPO's constant normaliser
    # the engine / trainer correction (TRL's vllm_importance_sampling_mode; None: off) and its bounds
    sampling_correction_mode: str | None = None
    sampling_correction_min: float = 0.0
    sampling_correction_max: float | None = 3.0
    # DeepSeek-V3.2's off-policy sequence mask (TRL's off_policy_mask_threshold; None: off)
    off_policy_mask_threshold: float | None = None
    entropy_coef: float = 0.0  # the entropy bonus (TRL's entropy_coef): loss - coef x mean token entropy


# C901 kept: one optional term per option, applied in TRL's order; each tested on its own
def grpo_loss(  # noqa: C901
    logp: torch.Tensor,  # [N, T] log-prob of each sampled token under the policy being trained
    old_logp: torch.Tensor,  # [N, T] the same under the policy that sampled (no grad)
    advantages: torch.Tensor,  # [N]
    mask: torch.Tensor,  # [N, T] 1 for completion tokens
    settings: LossSettings,
    ref_logp: torch.Tensor | None = None,  # [N, T] under the frozen reference, when beta > 0
    learn_mask: torch.Tensor | None = None,  # [N, T] bool: the tokens whose policy term counts (top entropy)
    sampling_logp: torch.Tensor | None = None,  # [N, T] the rollout engine's log-probs of the same tokens
    entropies: torch.Tensor | None = None,  # [N, T] each position's entropy, with grad (entropy_coef)
) -> Loss:
    """The policy term of ``settings.loss_type`` plus ``beta`` x KL, aggregated per ``loss_type``: the loss,
    its metrics and what it is a mean over (``AGGREGATIONS``), unpacking as ``loss, metrics``.

    ``learn_mask`` (``top_entropy_quantile``): the policy term of the other tokens is zeroed, their KL kept
    and the normaliser unchanged, as TRL. ``settings.bias_correction_kl``: each token's KL is multiplied by
    the (differentiable) importance weight ``pi / pi_old``, so that its gradient is the unbiased gradient of
    the reverse KL (TRL's ``use_bias_correction_kl``); the logged ``kl`` is the weighted one, as TRL's.

    With one update per rollout (``old_logp == logp``) the ratio is 1, clipping never acts, and for the
    clipped types the loss equals ``-mean(advantage)`` + the KL term.

    ``sampling_logp`` with ``settings.sampling_correction_mode`` (TRL's ``vllm_importance_sampling_*``): the
    policy term is multiplied by :func:`~agents.grpo.variants.sampling_correction` of ``old_logp`` against
    it (vespo: taken into its sequence weight), before the KL is added, as TRL; exactly 1 where they agree.

    ``settings.off_policy_mask_threshold``: the policy term of each completion with a negative advantage whose
    mean KL from the policy that sampled (``sampling_logp`` where the engine gave it, else ``old_logp``, as
    TRL) exceeds it is zeroed (:func:`~agents.grpo.variants.off_policy_mask`); its KL term stays.

    ``settings.entropy_coef``: the loss minus ``entropy_coef`` x the mean of ``entropies`` over the tokens the
    policy term learns from (every completion token, or ``learn_mask``'s), whatever ``loss_type`` (TRL's
    entropy bonus, :func:`~agents.grpo.variants.entropy_bonus`); ``policy_loss`` logs the loss without it.
    """
    if settings.loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {settings.loss_type!r}")
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype).unsqueeze(1)  # [N, 1]
    log_ratio = logp - old_logp  # [N, T]
    ratio = torch.exp(log_importance_weights(log_ratio, mask, settings.importance_sampling_level))
    correction = None
    if sampling_logp is not None and settings.sampling_correction_mode is not None:
        correction = sampling_correction(
            old_logp, sampling_logp.to(logp.dtype), mask, settings.sampling_correction_mode,
            settings.sampling_correction_min, settings.sampling_correction_max,
        )  # fmt: skip
    kept = None
    if settings.off_policy_mask_threshold is not None:
        behaviour = old_logp if sampling_logp is None else sampling_logp.to(logp.dtype)
        kept = off_policy_mask(logp, behaviour, adv, mask, settings.off_policy_mask_threshold)  # [N, 1]
    vespo_weight = correction if settings.loss_type == "vespo" else None
    term = policy_term(settings.loss_type, logp, log_ratio, ratio, adv, mask, settings, vespo_weight)
    per_token = term.per_token  # [N, T] or [N, 1]
    if kept is not None:
        per_token = per_token * kept
    if learn_mask is not None:
        per_token = per_token * learn_mask.to(logp.dtype)
    if correction is not None and settings.loss_type != "vespo":
        per_token = per_token * correction
    kl = None
    if settings.beta != 0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs ref_logp from the reference model")
        kl = kl_to_reference(logp, ref_logp, settings.kl_estimator)
        if settings.bias_correction_kl:
            kl = kl * ratio
        per_token = per_token + settings.beta * kl
    loss = policy_loss = aggregate(settings.loss_type, per_token, mask, settings.max_completion_length)
    if settings.entropy_coef != 0:
        if entropies is None:
            raise ValueError("entropy_coef != 0 needs the entropies of this micro-batch's forward")
        loss = policy_loss - settings.entropy_coef * entropy_bonus(entropies, mask, learn_mask)

    with torch.no_grad():
        metrics = {"loss": float(loss), "ratio_mean": logged_mean(ratio, mask)}
        metrics.update({name: logged_mean(value, mask) for name, value in term.logged.items()})
        if kl is not None:
            metrics["kl"] = float(masked_mean(kl, mask))
        if correction is not None:
            metrics.update(sampling_correction_metrics(old_logp, sampling_logp, correction, mask))
        if kept is not None:  # a share of completions (TRL logs none)
            metrics["off_policy_masked_fraction"] = 1.0 - logged_mean(kept, mask)
        if settings.entropy_coef != 0:  # TRL's names; TRL's `entropy` is our token_entropy
            metrics["policy_loss"] = float(policy_loss)
            metrics["entropy_coef"] = settings.entropy_coef
            metrics["token_entropy"] = float(masked_mean(entropies, mask))
        if learn_mask is not None:
            metrics["learn_fraction"] = float(masked_mean(learn_mask.to(logp.dtype), mask))
    return Loss(loss, metrics, AGGREGATIONS[settings.loss_type].mean_over)
