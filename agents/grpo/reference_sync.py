"""Periodic reference-model sync (TR-DPO, Gorbatovski et al. 2024; TRL's ``sync_ref_model``).

Every ``ref_model_sync_steps`` optimiser steps the frozen reference of the KL term moves towards the policy:
``ref = alpha * policy + (1 - alpha) * ref`` (``ref_model_mixup_alpha``), so that the KL anchors to a recent
policy instead of the starting one. The step count is TRL's ``global_step``: optimiser steps, so with
``num_iterations`` k a rollout batch counts k of them.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def mix_into_reference(reference: torch.nn.Module, policy: torch.nn.Module, alpha: float) -> None:
    """``ref <- (1 - alpha) ref + alpha policy``, parameter by parameter, in place and in the parameters' own
    dtype, in TRL's order of operations (``SyncRefModelCallback._sync_target_model``: multiply, then add), so
    that the weights are bit for bit TRL's. Both models must have the same architecture (parameter order)."""
    for ref, param in zip(reference.parameters(), policy.parameters(), strict=True):
        ref.mul_(1.0 - alpha).add_(param, alpha=alpha)


def sync_due(optimizer_step: int, every: int) -> bool:
    """Whether the reference is mixed after optimiser step ``optimizer_step`` (1-based, TRL's ``global_step``
    at ``on_step_end``)."""
    return optimizer_step % every == 0


def reference_state(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The reference's weights for a checkpoint: its parameters by name (tied weights once)."""
    return {name: param.detach() for name, param in reference.named_parameters()}


@torch.no_grad()
def load_reference_state(reference: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy :func:`reference_state`'s weights back into ``reference`` (every parameter, names checked)."""
    params = dict(reference.named_parameters())
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(
            f"the checkpoint's reference model does not fit this one (missing {missing[:3]}, extra {extra[:3]})"
        )
    for name, param in params.items():
        param.copy_(state[name])
