"""GRPO (Shao et al., 2024) as Perception-R1 runs it, with the common variants as options."""

from __future__ import annotations

import dataclasses
import warnings

import torch

from agents.base import Agent
from agents.config import SetupError
from agents.distributed import Parallel
from agents.grpo.adaptive_entropy import AdaptiveEntropy
from agents.grpo.advantages import (
    batch_standardized,
    component_rewards,
    group_advantages,
    normalized_component_sum,
)
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss
from agents.grpo.reference_sync import load_reference_state, mix_into_reference, reference_state, sync_due
from agents.grpo.variants import high_entropy_mask, truncated_completions
from agents.rollout import Rollout, RolloutBatch


class GRPOAgent(Agent):
    """Group-relative policy optimisation.

    Per rollout batch of B observations x G answers: advantages are the answers' rewards standardised
    within their group; the policy takes ``num_iterations`` gradient steps on the clipped surrogate plus
    ``beta`` x KL to a frozen copy of the starting model, all at the learning rate of this batch.
    The variants (``loss_type``, GSPO, ``delta``, ...) are options: ``agents/grpo/config.py``.
    """

    config: GRPOConfig
    name = "grpo"
    config_class = GRPOConfig
    # top_entropy_quantile: the entropies [n, T] of the micro-batch whose log-probs were scored last, read
    # by the loss of that micro-batch (Agent.update scores a micro-batch, then takes its loss)
    _entropies: torch.Tensor | None = None
    # vllm_importance_sampling_correction: the engine's sampling log-probs [n, T] of that micro-batch (None:
    # the engine gave none), and whether the one warning about an engine that gives none was given
    _sampling_logp: torch.Tensor | None = None
    _warned_no_sampling_logp = False
    # sync_ref_model: the optimiser steps taken on the current rollout batch so far
    _steps_this_batch = 0
    # use_adaptive_entropy: the entropy coefficient's controller (made at the first loss)
    _adaptive_entropy: AdaptiveEntropy | None = None

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """[B, G] advantages of this rank's groups; ``scale_rewards="batch"``: by the global batch's std."""
        c = self.config
        everyone = self.parallel.all_gather_rows(rewards) if c.scale_rewards == "batch" else None
        return group_advantages(rewards, scale=c.scale_rewards, eps=c.advantage_eps, batch_rewards=everyone)

    def batch_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``normalize_then_sum`` (GDPO): from the reward components ``reward_weights`` names, each standardised
        within its group, summed with their weights, then standardised over the global batch (TRL)."""
        c = self.config
        if c.multi_objective_aggregation == "sum_then_normalize":
            return self.advantages(batch.rewards)
        names = list(c.reward_weights)
        weights = torch.tensor([float(c.reward_weights[name]) for name in names])
        sums = normalized_component_sum(component_rewards(batch.groups, names), weights, c.advantage_eps)
        return batch_standardized(sums, self.parallel.all_gather_rows(sums), c.advantage_eps)

    def loss_mask(self, batch: RolloutBatch) -> torch.Tensor:
        """Every completion token; with ``mask_truncated_completions``, none of a completion cut before a stop
        token (TRL: the last token is neither a stop token nor padding)."""
        rollout = batch.rollout
        mask = rollout.completion_mask
        if not self.config.mask_truncated_completions:
            return mask
        if not hasattr(self.policy, "stop_token_ids"):
            raise ValueError("mask_truncated_completions needs a policy with stop_token_ids (QwenVLPolicy)")
        stops = [*self.policy.stop_token_ids, self.policy.pad_token_id]
        cut = truncated_completions(rollout.completion_ids, mask, stops)  # [N]
        return mask * (~cut).unsqueeze(1).to(mask.dtype)

    def logprobs(self, rollout: Rollout) -> torch.Tensor:
        """As :meth:`Agent.logprobs`; with ``top_entropy_quantile < 1`` or ``entropy_coef`` the same forward also
        gives each position's entropy (with grad), kept for the loss of this micro-batch; with ``vllm_importance_sampling_correction``
        or ``off_policy_mask_threshold`` the engine's sampling log-probs of this micro-batch are kept too."""
        if self.config.reads_sampling_logprobs:
            self._sampling_logp = self._engine_logprobs(rollout)
        if not self.config.needs_entropies:
            return super().logprobs(rollout)
        logp, self._entropies = self.trainable(rollout, with_entropy=True)
        return logp

    def _engine_logprobs(self, rollout: Rollout) -> torch.Tensor | None:
        """The rollout's sampling log-probs; None where its engine gave none, with one warning per agent when
        the engine correction needed them (the off-policy mask then measures from pi_old, as TRL).

        A no-op rather than a refusal at start-up: whether an engine gives them depends on the rollout
        (vLLM's only at temperature 1 or greedy), and TRL too skips the correction without vLLM."""
        needed = self.config.vllm_importance_sampling_correction
        if needed and rollout.sampling_logprobs is None and not self._warned_no_sampling_logp:
            self._warned_no_sampling_logp = True
            warnings.warn(
                "vllm_importance_sampling_correction: the rollout engine gave no sampling log-probs "
                "(vLLM gives them only at temperature 1 or greedy): no correction "
                "is applied",
                stacklevel=3,
            )
        return rollout.sampling_logprobs

    def loss(self, logp, advantages, mask, old_logp, ref_logp):
        learn_mask = entropies = None
        if self.config.needs_entropies:
            entropies, self._entropies = self._entropies, None
            if entropies is None or entropies.shape != logp.shape:
                raise RuntimeError(
                    "top_entropy_quantile / entropy_coef: no entropies from this micro-batch's log-prob pass"
                )
        if self.config.top_entropy_quantile < 1:
            # the quantile over this micro-batch's tokens on every rank, as TRL's over its per-device batches
            real = entropies.detach()[mask.bool()].float().cpu()
            pool = torch.cat(self.parallel.gather_objects([real])) if self.parallel.enabled else None
            learn_mask = high_entropy_mask(
                entropies.detach(), mask, self.config.top_entropy_quantile, pool=pool
            )
        sampling_logp = None
        if self.config.reads_sampling_logprobs:  # read once: each micro-batch brings its own
            sampling_logp, self._sampling_logp = self._sampling_logp, None
            if sampling_logp is not None:
                sampling_logp = sampling_logp.to(logp.device)
        settings = self.config.loss_settings()
        controller = self.entropy_controller()
        if controller is not None:  # this step's coefficient; the step's entropy measured on the same tokens
            settings = dataclasses.replace(settings, entropy_coef=controller.applied())
            controller.observe(entropies, mask if learn_mask is None else mask * learn_mask.to(mask.dtype))
        return grpo_loss(
            logp,
            old_logp,
            advantages,
            mask,
            settings,
            ref_logp,
            learn_mask=learn_mask,
            sampling_logp=sampling_logp,
            entropies=entropies,
        )

    @property
    def iterations(self) -> int:
        return self.config.num_iterations

    def entropy_controller(self) -> AdaptiveEntropy | None:
        """``use_adaptive_entropy``'s controller, starting from ``entropy_coef``; None without it."""
        c = self.config
        if not c.use_adaptive_entropy:
            return None
        if self._adaptive_entropy is None:
            self._adaptive_entropy = AdaptiveEntropy(
                coef=c.entropy_coef, target=c.entropy_target, delta=c.entropy_coef_delta,
                minimum=c.entropy_coef_min, maximum=c.entropy_coef_max,
            )  # fmt: skip
        return self._adaptive_entropy

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """As :meth:`Agent.update`; with ``use_adaptive_entropy`` ``entropy_coef`` logs the coefficient after the
        batch's last optimiser step (TRL logs it at each step's end)."""
        metrics = super().update(batch)
        controller = self.entropy_controller()
        if controller is not None:
            metrics["entropy_coef"] = controller.coef
        return metrics

    # ------------------------------------------------------------------ reference-model sync
    def distribute(self, parallel: Parallel) -> None:
        if self.config.sync_ref_model and parallel.shards_parameters:
            raise SetupError(
                "sync_ref_model (--sync-ref-model) mixes whole weights into the reference, which --parallel "
                "fsdp holds in shards: use --parallel ddp"
            )
        super().distribute(parallel)

    def clip_and_step(
        self, *, step: int | None = None, loss: float | None = None, advance_schedule: bool = True
    ) -> float:
        """As :meth:`Agent.clip_and_step`; with ``sync_ref_model`` the reference is then mixed towards the
        policy when the optimiser step count (TRL's ``global_step``) is a multiple of ``ref_model_sync_steps``.

        The count is the schedule's batches before this one times ``num_iterations`` plus this batch's steps:
        the schedule is in every checkpoint, so a resumed run mixes at the same steps."""
        batches_before = self.scheduler.last_epoch  # read before the schedule advances
        grad_norm = super().clip_and_step(step=step, loss=loss, advance_schedule=advance_schedule)
        controller = self.entropy_controller()
        if controller is not None:  # the step's entropy over every rank moves the coefficient
            controller.step(self.parallel.all_sum)
        c = self.config
        if c.sync_ref_model and self.reference is not None:
            self._steps_this_batch += 1
            optimizer_step = batches_before * self.iterations + self._steps_this_batch
            if sync_due(optimizer_step, c.ref_model_sync_steps):
                mix_into_reference(self.reference, self.policy.model, c.ref_model_mixup_alpha)
            if advance_schedule:
                self._steps_this_batch = 0
        return grad_norm

    def state_dict(self) -> dict:
        """As :meth:`Agent.state_dict`, plus the reference's weights once ``sync_ref_model`` moves them (the
        starting model no longer gives them back on resume) and ``use_adaptive_entropy``'s coefficient."""
        state = super().state_dict()
        if self.config.sync_ref_model and self.reference is not None:
            state["reference"] = reference_state(self.reference)
        controller = self.entropy_controller()
        if controller is not None:
            state["adaptive_entropy"] = controller.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "reference" in state and self.reference is not None:
            load_reference_state(self.reference, state["reference"])
        controller = self.entropy_controller()
        if controller is not None and "adaptive_entropy" in state:
            controller.load_state_dict(state["adaptive_entropy"])
