"""Dynamic sampling (DAPO; verl's ``algorithm.filter_groups``): train only on groups whose rewards differ.

A group whose G rewards are all equal has zero advantage under GRPO: it costs G rollouts and teaches
nothing. With ``filter_groups`` the Trainer drops such groups and samples further generation batches of
``prompts_per_step`` observations until ``prompts_per_step`` informative groups are kept (the first ones, in
the order they were drawn), as verl's ``recipe/dapo/dapo_ray_trainer.py`` does. Where verl takes its extra
batches from the data loader, here generation batch ``r >= 1`` of step ``s`` draws its observations from
``(seed, s, r)`` (:func:`extra_indices`): the epoch order of :class:`~agents.trainer.DataOrder` is untouched,
so a resumed run repeats and loses nothing, and a step is the same whatever ran before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from agents.base import derive_seed
from agents.rollout import Rollout, RolloutBatch

_EXTRA_STREAM = 3  # derive_seed(seed, step, 3, round): apart from sampling's (seed, step, 1, position)


class TooManyGenerationBatches(RuntimeError):
    """The cap on generation batches was reached before the step had enough informative groups (verl raises
    its ``ValueError`` at the same point)."""


def informative_groups(rewards: torch.Tensor) -> list[bool]:
    """Which groups of ``rewards`` ``[b, G]`` are kept: reward standard deviation > 0, or G == 1 (verl's
    rule: ``std > 0 or len(metric_vals) == 1``)."""
    if rewards.shape[1] == 1:
        return [True] * rewards.shape[0]
    return [bool(np.std(row) > 0) for row in rewards.double().numpy()]


def extra_indices(dataset_size: int, seed: int, step: int, round_: int, batch: int) -> list[int]:
    """The dataset indices of generation batch ``round_`` (>= 1) of ``step``: ``batch`` indices of a seeded
    permutation of the dataset (repeating it if ``batch`` exceeds the dataset)."""
    order = np.random.default_rng(derive_seed(seed, step, _EXTRA_STREAM, round_)).permutation(dataset_size)
    return [int(order[k % dataset_size]) for k in range(batch)]


def _pad(t: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    """``t`` ``[n, w]`` padded with ``value`` to ``[n, width]`` on the left or the right."""
    extra = width - t.shape[1]
    if extra == 0:
        return t
    fill = torch.full((t.shape[0], extra), value, dtype=t.dtype, device=t.device)
    return torch.cat([fill, t] if left else [t, fill], dim=1)


def concat_rollouts(parts: Sequence[Rollout], pad_token_id: int) -> Rollout:
    """One rollout of ``parts`` in order: prompts left-padded to the widest P, completions right-padded to
    the widest T (pad id, mask 0), ``obs_index`` renumbered."""
    p = max(r.prompt_ids.shape[1] for r in parts)
    t = max(r.completion_ids.shape[1] for r in parts)
    offsets = np.cumsum([0] + [r.num_observations for r in parts[:-1]])
    with_logprobs = all(r.sampling_logprobs is not None for r in parts)
    return Rollout(
        prompt_ids=torch.cat([_pad(r.prompt_ids, p, pad_token_id, left=True) for r in parts]),
        prompt_mask=torch.cat([_pad(r.prompt_mask, p, 0, left=True) for r in parts]),
        prompt_mm_token_type_ids=torch.cat(
            [_pad(r.prompt_mm_token_type_ids, p, 0, left=True) for r in parts]
        ),
        pixel_values=torch.cat([r.pixel_values for r in parts]),
        image_grid_thw=torch.cat([r.image_grid_thw for r in parts]),
        completion_ids=torch.cat([_pad(r.completion_ids, t, pad_token_id, left=False) for r in parts]),
        completion_mask=torch.cat([_pad(r.completion_mask, t, 0, left=False) for r in parts]),
        obs_index=torch.cat([r.obs_index + int(o) for r, o in zip(parts, offsets)]),
        texts=[text for r in parts for text in r.texts],
        num_samples=parts[0].num_samples,
        sampling_logprobs=(
            torch.cat([_pad(r.sampling_logprobs, t, 0.0, left=False) for r in parts])
            if with_logprobs
            else None
        ),
    )


def keep_groups(batch: RolloutBatch, keep: Sequence[int]) -> RolloutBatch:
    """The groups ``keep`` of ``batch`` (positions, in order) with their completions and rewards."""
    return RolloutBatch(
        batch.step,
        [batch.groups[k] for k in keep],
        batch.rollout.select_observations(list(keep)),
        batch.rewards[list(keep)],
        dict(batch.timings),
    )


def concat_batches(parts: Sequence[RolloutBatch], pad_token_id: int) -> RolloutBatch:
    """The groups of ``parts`` in order, as one step's batch (timings summed per phase)."""
    timings: dict[str, float] = {}
    for part in parts:
        for key, seconds in part.timings.items():
            timings[key] = timings.get(key, 0.0) + seconds
    return RolloutBatch(
        parts[0].step,
        [g for part in parts for g in part.groups],
        concat_rollouts([part.rollout for part in parts], pad_token_id),
        torch.cat([part.rewards for part in parts]),
        timings,
    )
