"""Today's rollouts: the policy's own ``generate`` (transformers' ``generate``, prefill once per group).

``Rollout.sampling_logprobs``: each sampled token's ``log softmax(logits / temperature)`` of the raw logits
the decode step computed (before the vision tokens are suppressed, as the fast engine and the trainer's
``completion_logprobs`` score them; greedy: temperature 1), so that an importance-sampling correction against
the trainer is 1 on-policy up to float reordering. ``QwenVLPolicy.generate`` does not hand transformers' scores
back, so :class:`_StepLogprobs` reads them off the model's forward while ``model.generate`` runs: one decode
step's logits ``[rows, V]`` at a time, never the whole ``[rows, T, V]`` that ``output_logits=True`` would keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from agents.rollout import Policy, Rollout, Sampling, with_sampling_logprobs

__all__ = ["TransformersEngine"]


class TransformersEngine:
    """Samples with ``policy.generate`` (any :class:`~agents.rollout.Policy`); shares the policy's weights."""

    name = "transformers"
    shares_weights = True

    def __init__(self, policy: Policy):
        self.policy = policy

    def generate(
        self,
        observations: Sequence[Mapping[str, Any]],
        num_samples: int,
        sampling: Sampling,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        temperature = 1.0 if sampling.greedy else sampling.temperature  # as the trainer scores them
        steps = _StepLogprobs(temperature)
        with steps.recording(self.policy.model):
            rollout = self.policy.generate(
                observations,
                num_samples=num_samples,
                observation_seeds=observation_seeds,
                **sampling.generate_kwargs(),
            )
        repeats = num_samples if sampling.greedy else 1  # greedy decodes one answer per observation
        return with_sampling_logprobs(rollout, steps.logprobs(rollout.completion_ids[::repeats]), repeats)

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Nothing to do: ``generate`` runs the training model itself."""

    def describe(self) -> str:
        return "transformers (policy.generate)"


class _StepLogprobs:
    """The log-prob of each decoded token, from the forwards of ``model.generate``.

    Decode step ``k``'s forward gives the logits of token ``k`` (its last position); token ``k`` itself is fed
    to step ``k + 1``'s forward (its ``input_ids``' last column), where it is gathered. So one step's logits are
    kept at a time; the last step's token is gathered from the rollout afterwards (:meth:`logprobs`).
    Forwards outside ``model.generate`` (``QwenVLPolicy``'s prefill of the shared prompt) are not recorded.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.pending: torch.Tensor | None = (
            None  # [rows, V] the last step's log-softmax, its token not yet fed
        )
        self.gathered: list[torch.Tensor] = []  # [rows] per decode step

    def _on_forward(self, module, args, kwargs, output) -> None:
        fed = kwargs.get("input_ids")
        if fed is None:
            raise RuntimeError("the transformers engine's log-probs need generate to feed input_ids")
        if self.pending is not None:
            self.gathered.append(self.pending.gather(1, fed[:, -1:].to(self.pending.device)).squeeze(1))
        logits = output.logits[:, -1].float()  # [rows, V], raw: before any logits processor
        self.pending = torch.log_softmax(logits if self.temperature == 1.0 else logits / self.temperature, -1)

    @contextmanager
    def recording(self, model: torch.nn.Module) -> Iterator[None]:
        """While the block runs, ``model.generate`` records its decode steps."""
        if not hasattr(model, "generate"):  # a policy that samples otherwise: nothing to record
            yield
            return
        own = vars(model).get("generate")  # an instance's own generate, if any, comes back after
        original: Callable[..., Any] = model.generate

        def generate_recording(*args, **kwargs):
            handle = model.register_forward_hook(self._on_forward, with_kwargs=True)
            try:
                return original(*args, **kwargs)
            finally:
                handle.remove()

        model.generate = generate_recording
        try:
            yield
        finally:
            if own is None:
                del model.generate
            else:
                model.generate = own

    def logprobs(self, decoded_ids: torch.Tensor) -> torch.Tensor | None:
        """``[rows, steps]``, token ``k`` of each decoded row in column ``k``; ``decoded_ids`` ``[rows, T]`` (the
        rollout's, one row per decoded answer) gives the last step's token. None if nothing was recorded."""
        if self.pending is None:
            return None
        columns = list(self.gathered)
        last = len(columns)  # the last step's token: in the rollout if no answer stopped before it
        if last < decoded_ids.shape[1]:
            token = decoded_ids[:, last : last + 1].to(self.pending.device)
            columns.append(self.pending.gather(1, token).squeeze(1))
        return torch.stack(columns, dim=1)
