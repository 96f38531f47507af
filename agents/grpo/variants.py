"""The maths of GRPO's variants, one small function each; :func:`agents.grpo.loss.grpo_loss` composes them.

Each follows TRL 1.16's ``GRPOTrainer._compute_loss`` (its names and defaults; the parity tests run TRL's
own code on the same tensors, ``tests/agents/grpo/test_variants.py``). Where TRL and a paper differ the
function says which is followed and why.

Shapes: ``N`` completions, ``T`` completion tokens (right-padded), mask 1 on completion tokens. An importance
weight is ``[N, T]`` at token level or ``[N, 1]`` at sequence level (GSPO); ``[N, 1]`` broadcasts over tokens.
Advantages are ``[N, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from agents.grpo.loss_types import SAMPLING_CORRECTION_MODES
from agents.losses import masked_mean


@dataclass(frozen=True)
class VariantSettings:
    """The knobs the policy terms read (a subset of GRPOConfig, with TRL's names)."""

    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    delta: float | None = None  # two-sided clipping's cap of the ratio (None: off)
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    vespo_k_pos: float = 2.0
    vespo_lambda_pos: float = 3.0
    vespo_k_neg: float = 3.0
    vespo_lambda_neg: float = 2.0


@dataclass
class PolicyTerm:
    """A policy term per token (``[N, T]`` or ``[N, 1]``, before the KL) and the indicators it logs: their
    mean over tokens (or, at sequence level, over completions) is the metric."""

    per_token: torch.Tensor
    logged: dict[str, torch.Tensor] = field(default_factory=dict)


# --------------------------------------------------------------------------- importance weights
def log_importance_weights(log_ratio: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    """``log(pi / pi_old)``: per token ``[N, T]``, or (GSPO, ``level="sequence"``) the mean over each
    completion's tokens ``[N, 1]``: the log of the geometric mean of its token ratios, so that the weight
    does not grow with the completion's length (GSPO, Zheng et al. 2025, eq. 7)."""
    if level == "token":
        return log_ratio
    if level == "sequence":
        return masked_mean(log_ratio, mask, dim=1).unsqueeze(1)
    raise ValueError(f"importance_sampling_level must be token or sequence, got {level!r}")


# --------------------------------------------------------------------------- engine / trainer mismatch
@torch.no_grad()
def sampling_correction(
    old_logp: torch.Tensor,  # [N, T] the trainer's log-probs under the weights that sampled
    sampling_logp: torch.Tensor,  # [N, T] the rollout engine's log-probs of the same tokens
    mask: torch.Tensor,  # [N, T]
    mode: str,
    clip_min: float,  # 0: no lower bound (TRL's None)
    clip_max: float | None,  # None: no upper bound
) -> torch.Tensor:
    """The importance weight ``pi_old / pi_engine`` that corrects for the engine sampling from (numerically)
    another distribution than the trainer scores (TRL's ``vllm_importance_sampling_correction``): per token
    ``[N, T]``, or per completion ``[N, 1]`` (``exp`` of the sum of its token log-differences); a constant.

    ``*_truncate`` clamps it to ``[clip_min, clip_max]`` (truncated IS); ``*_mask`` sets it to 0 outside,
    so that those tokens (or completions) drop out of the policy term (masked IS). Equal log-probs give
    exactly 1. A NaN sampling log-prob (a token the engine could not score) gives 1, as TRL."""
    if mode not in SAMPLING_CORRECTION_MODES:
        raise ValueError(
            f"vllm_importance_sampling_mode must be one of {SAMPLING_CORRECTION_MODES}, got {mode!r}"
        )
    diff = torch.nan_to_num((old_logp - sampling_logp) * mask, nan=0.0)  # [N, T]
    if mode.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True)  # [N, 1]
    ratio = torch.exp(diff)
    if mode.endswith("truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    upper = math.inf if clip_max is None else clip_max
    return ratio.masked_fill((ratio < clip_min) | (ratio > upper), 0.0)


def sampling_correction_metrics(
    old_logp: torch.Tensor, sampling_logp: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """TRL's means of the correction (its names, under ``sampling/``): the weight's mean over tokens (over
    completions at sequence level) and the mean ``|pi_old - pi_engine|`` in log space over the scored
    tokens. TRL's ``/min`` and ``/max`` are extremes, which do not add over micro-batches: not logged."""
    delta = torch.abs(old_logp - sampling_logp)
    scored = mask.bool() & ~torch.isnan(delta)
    mean_delta = float(delta[scored].mean()) if scored.any() else 0.0
    return {
        "sampling/sampling_logp_difference/mean": mean_delta,
        "sampling/importance_sampling_ratio/mean": logged_mean(weight, mask),
    }


# --------------------------------------------------------------------------- off-policy sequences
@torch.no_grad()
def off_policy_mask(
    logp: torch.Tensor,  # [N, T] the policy being trained
    behaviour_logp: torch.Tensor,  # [N, T] the policy that sampled: the engine's log-probs, else pi_old
    advantages: torch.Tensor,  # [N, 1]
    mask: torch.Tensor,  # [N, T]
    threshold: float,
) -> torch.Tensor:
    """``[N, 1]``, 1 = keep: DeepSeek-V3.2's off-policy sequence mask (its eq. 9, TRL's
    ``off_policy_mask_threshold``). A completion leaves the policy term when its advantage is negative and
    its mean token ``log pi_behaviour - log pi`` (a KL estimate over its tokens) exceeds ``threshold``: a
    negative update on a sample the policy has drifted far from is the one that destabilises training.
    Positive advantages always stay. A NaN behaviour log-prob (a token the engine could not score) counts 0,
    as TRL. On-policy (``logp == behaviour_logp``) the KL is 0 and every completion stays."""
    kl = torch.nan_to_num(behaviour_logp - logp, nan=0.0)  # [N, T]
    mean_kl = (kl * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # [N, 1]
    return ((advantages >= 0) | (mean_kl <= threshold)).to(mask.dtype)


# --------------------------------------------------------------------------- policy terms
def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, s: VariantSettings) -> PolicyTerm:
    """PPO's ``-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)`` (grpo, dapo, dr_grpo, bnpo, luspo).

    ``delta`` (INTELLECT-2's two-sided clipping): the unclipped ``r`` is also capped at ``delta``. With
    ``delta >= 1 + eps_high`` (TRL's recommendation) that only changes a negative advantage's term (``min``
    takes the larger ratio then): its loss stops growing past ``delta``. As TRL, the clip fractions are
    counted on the capped ratio (the same counts for ``delta > 1 + eps_high``).
    """
    clipped = torch.clamp(ratio, 1 - s.epsilon_low, 1 + s.epsilon_high)
    if s.delta is not None:
        ratio = torch.clamp(ratio, max=s.delta)
    per_token = -torch.minimum(ratio * advantages, clipped * advantages)
    low = (ratio < 1 - s.epsilon_low) & (advantages < 0)
    high = (ratio > 1 + s.epsilon_high) & (advantages > 0)
    logged = {"clip_fraction": low | high, "clip_fraction_low": low, "clip_fraction_high": high}
    return PolicyTerm(per_token, logged)


def cispo_term(
    logp: torch.Tensor, ratio: torch.Tensor, advantages: torch.Tensor, s: VariantSettings
) -> PolicyTerm:
    """CISPO (MiniMax-M1): ``-sg(min(r, eps_high)) A log pi``: every token keeps a gradient, the importance
    weight is capped instead of the update.

    The cap is ``epsilon_high`` itself, as TRL and ScaleRL (its ``epsilon_max``, 5.0 there); the MiniMax-M1
    paper writes ``clip(r, 1 - eps_low^IS, 1 + eps_high^IS)`` with no lower bound in practice. TRL's form
    is followed, so that its options mean what they mean there; the config refuses a cap below 1, which
    would shrink on-policy gradients. Logged as TRL: tokens capped with a positive advantage.
    """
    weight = torch.clamp(ratio, max=s.epsilon_high).detach()
    per_token = -weight * advantages * logp
    return PolicyTerm(per_token, {"cispo_clip_fraction": (ratio > s.epsilon_high) & (advantages > 0)})


def sapo_term(ratio: torch.Tensor, advantages: torch.Tensor, s: VariantSettings) -> PolicyTerm:
    """SAPO (Gao et al. 2025): ``-sigmoid(tau (r - 1)) 4 / tau A``, a smooth gate for hard clipping.

    At ``r = 1`` the gradient is exactly ``A`` (sigmoid' (0) = 1/4); far off-policy it fades instead of
    stopping. ``tau`` is ``sapo_temperature_pos`` for a positive advantage, ``sapo_temperature_neg`` else.
    """
    tau = torch.where(advantages > 0, s.sapo_temperature_pos, s.sapo_temperature_neg)
    per_token = -torch.sigmoid(tau * (ratio - 1)) * 4 / tau * advantages
    return PolicyTerm(per_token)


@torch.no_grad()
def vespo_weights(
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    s: VariantSettings,
    sampling_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """VESPO's sequence weight ``[N, 1]``: ``phi(w) = e^lambda w^k e^(-lambda w)`` (``phi(1) = 1``) of the
    sequence ratio ``w = exp(sum of the token log-ratios)``, k and lambda by the advantage's sign; a
    constant (no gradient), computed in log space with TRL's clamps (log-ratios to [-20, 20], ``log w`` to
    [log 1e-8, 20]) so that no value overflows. ``sampling_weight`` (``[N, T]``, the token-level
    :func:`sampling_correction`) enters ``w`` as TRL's: ``w = pi / pi_old x pi_old / pi_engine``."""
    lower = math.log(1e-8)
    seq_log_ratio = (torch.clamp(log_ratio, -20.0, 20.0) * mask).sum(dim=-1, keepdim=True)  # [N, 1]
    if sampling_weight is not None:  # a masked token's weight 0 clamps to log 1e-8, as TRL's
        seq_log_ratio = seq_log_ratio + torch.clamp(torch.log(sampling_weight), lower, 20.0).sum(
            -1, keepdim=True
        )
    log_w = torch.clamp(seq_log_ratio, lower, 20.0)
    nonneg = advantages >= 0
    k = torch.where(nonneg, s.vespo_k_pos, s.vespo_k_neg)
    lam = torch.where(nonneg, s.vespo_lambda_pos, s.vespo_lambda_neg).clamp(min=1e-4)
    log_phi = lam + k * log_w - lam * torch.exp(log_w)
    return torch.exp(log_phi).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def vespo_term(
    logp: torch.Tensor,
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    s: VariantSettings,
    sampling_weight: torch.Tensor | None = None,
) -> PolicyTerm:
    """VESPO: ``-phi(w) A log pi`` with :func:`vespo_weights`; the gradient is ``phi(w) A grad log pi``."""
    phi = vespo_weights(log_ratio, mask, advantages, s, sampling_weight)
    return PolicyTerm(-phi * advantages * logp, {"vespo_phi_mean": phi})


def policy_term(
    loss_type: str,
    logp: torch.Tensor,  # [N, T] with grad
    log_ratio: torch.Tensor,  # [N, T] log(pi / pi_old), token level
    ratio: torch.Tensor,  # [N, T] or [N, 1] the importance weight at the configured level
    advantages: torch.Tensor,  # [N, 1]
    mask: torch.Tensor,  # [N, T]
    s: VariantSettings,
    sampling_weight: torch.Tensor | None = None,  # [N, T]: the engine correction, which vespo takes into w
) -> PolicyTerm:
    """The policy term of ``loss_type``."""
    if loss_type in ("grpo", "dapo", "dr_grpo", "bnpo", "luspo"):
        return clipped_surrogate(ratio, advantages, s)
    if loss_type == "cispo":
        return cispo_term(logp, ratio, advantages, s)
    if loss_type == "sapo":
        return sapo_term(ratio, advantages, s)
    if loss_type == "vespo":
        return vespo_term(logp, log_ratio, mask, advantages, s, sampling_weight)
    raise ValueError(f"unknown loss_type {loss_type!r}")


# --------------------------------------------------------------------------- aggregation
def _per_sequence_mean(per_token, mask, max_completion_length):
    return masked_mean(per_token, mask, dim=1).mean()


def _token_mean(per_token, mask, max_completion_length):
    return masked_mean(per_token, mask)


def _constant_length(per_token, mask, max_completion_length):
    return (per_token * mask).sum() / (mask.shape[0] * max_completion_length)


def _sequence_sum(per_token, mask, max_completion_length):
    return (per_token * mask).sum(dim=1).mean()


class Aggregation(NamedTuple):
    """How the per-token loss ``[N, T]`` becomes one number for the N completions given (``reduce``), and what
    that number is a mean over across micro-batches (``mean_over``, :class:`agents.losses.Loss`)."""

    reduce: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    mean_over: (
        str  # "tokens": micro-batches weigh by their share of the batch's tokens; "answers": completions
    )


# loss_type -> its aggregation. bnpo is TRL's token mean of each micro-batch ("local batch"), so weighed by
# completions: it depends on micro_batch_size, as in TRL.
AGGREGATIONS: dict[str, Aggregation] = {
    "grpo": Aggregation(_per_sequence_mean, "answers"),  # the paper: each completion's mean, then their mean
    "sapo": Aggregation(_per_sequence_mean, "answers"),
    "dapo": Aggregation(_token_mean, "tokens"),  # every token of the batch weighs the same
    "cispo": Aggregation(_token_mean, "tokens"),
    "vespo": Aggregation(_token_mean, "tokens"),
    "bnpo": Aggregation(_token_mean, "answers"),
    "dr_grpo": Aggregation(_constant_length, "answers"),  # Dr. GRPO: sum / (N x max_completion_length)
    "luspo": Aggregation(_sequence_sum, "answers"),  # LUSPO: each completion's sequence loss times its length
}


def aggregate(loss_type: str, per_token: torch.Tensor, mask: torch.Tensor, max_completion_length: int):
    """The scalar loss of ``per_token`` (``[N, T]``, or ``[N, 1]`` broadcast over the mask) per ``loss_type``."""
    return AGGREGATIONS[loss_type].reduce(per_token, mask, max_completion_length)


def logged_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """A logged indicator's mean, as TRL logs it: over tokens for ``[N, T]``, over completions for ``[N, 1]``."""
    values = values.to(mask.dtype)
    if values.shape[1] == 1:
        return float(values.mean())
    return float(masked_mean(values, mask))


# --------------------------------------------------------------------------- entropy bonus
def entropy_bonus(
    entropies: torch.Tensor,  # [N, T] each position's entropy (nats), with grad
    mask: torch.Tensor,  # [N, T]
    learn_mask: torch.Tensor | None = None,  # [N, T] bool: top_entropy_quantile's tokens
) -> torch.Tensor:
    """The mean entropy over the tokens the policy term learns from, which the loss subtracts times
    ``entropy_coef`` (TRL 1.16's entropy bonus). A token mean whatever ``loss_type``, as TRL: the coefficient
    means the same for every loss type. verl's ``entropy_coeff`` instead aggregates the entropy as its policy
    loss (``loss_agg_mode``): the same for token-mean types (dapo), a per-sequence mean for grpo. TRL's is
    followed, as every option here keeps TRL's name and meaning and is checked against its code."""
    acting = mask if learn_mask is None else mask * learn_mask.to(mask.dtype)
    return (entropies * acting).sum() / acting.sum().clamp(min=1.0)


# --------------------------------------------------------------------------- which tokens learn
def high_entropy_mask(
    entropies: torch.Tensor, mask: torch.Tensor, top_quantile: float, pool: torch.Tensor | None = None
) -> torch.Tensor:
    """``[N, T]`` bool: the completion tokens whose entropy is at least the ``1 - top_quantile`` quantile of
    ``pool``, the entropies the threshold is taken over (default: these completion tokens'; in a data-parallel
    run every rank's, as TRL gathers them) ('Beyond the 80/20 rule', Wang et al. 2025; TRL's
    ``get_high_entropy_mask``). ``top_quantile`` 0 keeps the highest only; ties are kept."""
    real = mask.bool()
    values = entropies[real].float() if pool is None else pool.float()
    if values.numel() == 0:
        return torch.zeros_like(real)
    threshold = torch.quantile(values, 1 - top_quantile)
    return (entropies * mask >= threshold) & real


def truncated_completions(
    completion_ids: torch.Tensor, completion_mask: torch.Tensor, stop_token_ids: list[int]
) -> torch.Tensor:
    """``[N]`` bool: the completions whose last token is not a stop token (cut at ``max_new_tokens``).

    TRL's test (``ids[-1] not in eos_and_pad``): ``stop_token_ids`` should include the pad id, as TRL's
    list. A completion with no token is not truncated (there is nothing to leave out)."""
    lengths = completion_mask.long().sum(dim=1)  # [N]; the mask is 1 on a prefix of each row
    last = completion_ids.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # [N]
    is_stop = torch.isin(last, torch.as_tensor(stop_token_ids, device=last.device))
    return (lengths > 0) & ~is_stop
