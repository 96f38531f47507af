"""The types that cross from the env to the agent: answers sampled, scored, and ready to learn from.

Shapes, everywhere: ``B`` observations (prompts) per step, ``G`` answers sampled for each (the group),
``N = B * G`` completions in *observation-major* order (observation 0's G answers, then observation 1's,
...), ``P`` prompt tokens (left-padded), ``T`` completion tokens (right-padded). Rewards are ``[B, G]``;
their flattening ``[N]`` lines up with the completions.

* :class:`Rollout`: what the policy sampled, with what is needed to recompute its log-probabilities;
* :class:`EpisodeGroup`: one observation's G answers as the env scored them;
* :class:`RolloutBatch`: one step's groups, rollout and rewards, which ``Agent.update`` learns from;
* :class:`Policy`: what an agent needs of a policy (``agents.policies.qwen_vl.QwenVLPolicy`` is one);
* :class:`Sampling` and :class:`RolloutEngine`: how answers are drawn, and what draws them
  (``agents/engines/``: transformers' ``generate``, the static-cache decoder, vLLM).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass
class Rollout:
    """G sampled answers for each of B observations, with what is needed to recompute their log-probs.

    Prompt tensors are stored once per observation (not per completion); ``obs_index`` maps completions
    to observations.
    """

    prompt_ids: torch.Tensor  # [B, P] long, left-padded with the pad id
    prompt_mask: torch.Tensor  # [B, P] long, 1 for real tokens
    prompt_mm_token_type_ids: torch.Tensor  # [B, P] int, 0 text, 1 image
    pixel_values: torch.Tensor  # [sum over images of h*w patches, C*temporal*patch*patch] float
    image_grid_thw: torch.Tensor  # [B, 3] long: (t, h, w) in patches, one image per observation
    completion_ids: torch.Tensor  # [N, T] long, right-padded with the pad id
    completion_mask: torch.Tensor  # [N, T] long, 1 for generated tokens up to and including the stop token
    obs_index: torch.Tensor  # [N] long, observation of each completion (observation-major)
    texts: list[str]  # N answers, special tokens kept except stop/pad tokens
    num_samples: int  # G
    # [N, T] float32: each completion token's log-prob as the engine that sampled it computed it, of
    # softmax(logits / temperature) before top-k/top-p (the trainer's completion_logprobs(temperature=...)),
    # 0 where the mask is 0; None where the engine does not give them (agents/engines/, docs/rollouts.md)
    sampling_logprobs: torch.Tensor | None = None

    @classmethod
    def from_prompt_inputs(
        cls,
        inputs: Mapping[str, torch.Tensor],
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        obs_index: torch.Tensor,
        texts: list[str],
        num_samples: int,
    ) -> Rollout:
        """A Rollout from ``encode_prompts``' tensors and the completions drawn for them."""
        return cls(
            prompt_ids=inputs["input_ids"],
            prompt_mask=inputs["attention_mask"],
            prompt_mm_token_type_ids=inputs["mm_token_type_ids"],
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            obs_index=obs_index,
            texts=texts,
            num_samples=num_samples,
        )

    @property
    def num_observations(self) -> int:
        return int(self.prompt_ids.shape[0])

    @property
    def num_completions(self) -> int:
        return int(self.completion_ids.shape[0])

    def to(self, device: torch.device | str) -> Rollout:
        """A copy with every tensor on ``device`` (floating tensors keep their dtype)."""
        moved = {
            f.name: (
                getattr(self, f.name).to(device)
                if torch.is_tensor(getattr(self, f.name))
                else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return Rollout(**moved)

    def select(self, completions: Sequence[int] | torch.Tensor) -> Rollout:
        """The sub-rollout of the given completions (e.g. a micro-batch), in the given order.

        Only the observations those completions belong to are kept (prompt tensors, image patches), and
        ``obs_index`` is renumbered. The completion width T is kept (rows line up with the parent's tensors).
        ``num_samples`` keeps its meaning (samples drawn per observation), even if a group is cut.
        """
        keep = torch.as_tensor(completions, dtype=torch.long).flatten().to(self.obs_index.device)
        obs_of_kept = self.obs_index[keep]
        obs = sorted(set(obs_of_kept.tolist()))
        remap = torch.full((self.num_observations,), -1, dtype=torch.long, device=self.obs_index.device)
        remap[torch.tensor(obs, dtype=torch.long, device=remap.device)] = torch.arange(
            len(obs), device=remap.device
        )
        counts = self.image_grid_thw.prod(-1).tolist()
        blocks = torch.split(self.pixel_values, counts, dim=0)
        return Rollout(
            prompt_ids=self.prompt_ids[obs],
            prompt_mask=self.prompt_mask[obs],
            prompt_mm_token_type_ids=self.prompt_mm_token_type_ids[obs],
            pixel_values=torch.cat([blocks[i] for i in obs], dim=0),
            image_grid_thw=self.image_grid_thw[obs],
            completion_ids=self.completion_ids[keep],
            completion_mask=self.completion_mask[keep],
            obs_index=remap[obs_of_kept],
            texts=[self.texts[int(k)] for k in keep.tolist()],
            num_samples=self.num_samples,
            sampling_logprobs=None if self.sampling_logprobs is None else self.sampling_logprobs[keep],
        )

    def select_observations(self, obs: Sequence[int]) -> Rollout:
        """The sub-rollout of the given observations (all their completions, observation-major)."""
        rows = [torch.nonzero(self.obs_index == int(o), as_tuple=False).flatten() for o in obs]
        return self.select(torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long))


@dataclass
class EpisodeGroup:
    """G one-step episodes that answer the same observation."""

    index: int  # dataset index of the observation (env.reset(options={"index": index}))
    observation: dict[str, Any]  # {"image": [H, W, 3] uint8, "prompt": str}
    answers: list[str]  # [G]
    rewards: list[float]  # [G]
    infos: list[dict[str, Any]]  # [G] the env's step infos


@dataclass
class RolloutBatch:
    """One step's collection: B groups of G answers, and the tensors to learn from them."""

    step: int  # the rollout batch's 0-based step (its sampling seeds and data are functions of it)
    groups: list[EpisodeGroup]  # [B]
    rollout: Rollout  # N = B * G completions, observation-major
    rewards: torch.Tensor  # [B, G] float32
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase


class Policy(Protocol):
    """What an agent (and the Trainer) needs of a policy: sample, score log-probs, save."""

    model: torch.nn.Module  # the network trained: its parameters are optimised, its mode switched
    synced_gpus: bool  # set under FSDP2: every rank keeps generating until all have stopped

    @property
    def device(self) -> torch.device: ...

    def generate(
        self,
        observations: Sequence[Mapping[str, Any]],
        *,
        num_samples: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_new_tokens: int = 64,
        do_sample: bool = True,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        """``num_samples`` (G) answers per observation, observation-major; ``observation_seeds[b]`` makes
        observation b's answers a function of the model, the observation and that seed alone."""
        ...

    def completion_logprobs(
        self, rollout: Rollout, *, model: torch.nn.Module | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """``[N, T]`` log-probabilities of the completion tokens under ``model`` (default: the policy's),
        of ``softmax(logits / temperature)``; 0 where the completion mask is 0; differentiable."""
        ...

    def save_pretrained(self, out_dir: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Weights and processor to ``out_dir`` (``state_dict``: weights to write instead of the model's)."""
        ...


@dataclass(frozen=True)
class Sampling:
    """How a rollout's answers are drawn: the settings every engine takes.

    ``do_sample=False`` or ``temperature == 0``: greedy (the G answers of an observation are then one answer
    repeated). ``top_k = 0`` and ``top_p = 1`` switch those filters off. ``max_new_tokens``: the longest
    answer, stop token included.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    do_sample: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            problems.append(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not (0 < self.top_p <= 1):
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k!r}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens!r}")
        if problems:
            raise ValueError("Sampling: " + "; ".join(problems))

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature <= 0

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`Policy.generate` that say the same."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
        }


class RolloutEngine(Protocol):
    """What samples a step's answers for the agent (``agents/engines/``; ``docs/rollouts.md``).

    An engine draws from the policy's current weights: one that shares the training model's tensors
    (``shares_weights``) sees every optimiser step at once; one with its own copy (vLLM) is sent the
    weights by :meth:`load_weights` after each update.
    """

    name: str  # the --rollout-engine value that makes it
    shares_weights: bool  # True: load_weights is never needed (the training model's own tensors)

    def generate(
        self,
        observations: Sequence[Mapping[str, Any]],
        num_samples: int,
        sampling: Sampling,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        """``num_samples`` (G) answers per observation, observation-major, as :meth:`Policy.generate`."""
        ...

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Take the policy's weights after an update (keys as ``policy.model.state_dict()``)."""
        ...


def with_sampling_logprobs(rollout: Rollout, logprobs: torch.Tensor | None, repeats: int = 1) -> Rollout:
    """``rollout`` with ``sampling_logprobs`` from ``logprobs`` ``[rows, >= T]`` (one row per decoded answer,
    each repeated ``repeats`` times: greedy decodes one answer per observation): cut to the rollout's ``T``
    completion tokens, 0 where its mask is 0."""
    if logprobs is not None:
        if repeats != 1:
            logprobs = logprobs.repeat_interleave(repeats, dim=0)
        mask = rollout.completion_mask
        width = mask.shape[1]
        cut = logprobs[:, :width].to(device=mask.device, dtype=torch.float32)
        if cut.shape[1] < width:  # an answer cut at no token (T' = 0) is padded to one column
            cut = torch.nn.functional.pad(cut, (0, width - cut.shape[1]))
        rollout.sampling_logprobs = cut * mask.to(torch.float32)
    return rollout
