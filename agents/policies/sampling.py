"""Per-row seeded sampling: each answer's randomness belongs to that answer alone.

``torch.multinomial`` over a batch draws from one RNG stream, so what answer ``n`` samples depends on
which other prompts share its batch, how many there are and in which order. A training run then
changes with the batch split: micro-batched generation, data-parallel ranks, a resume on a different
number of GPUs. Here every row owns a ``torch.Generator`` seeded from ``(observation seed, sample
index)``, and sampling is the Gumbel-max trick on the warped logits:

    token = argmax(logits / temperature [top-k, top-p filtered] + Gumbel noise of this row's generator)

which draws exactly from ``softmax`` of the warped logits (Gumbel, 1954; the same distribution
``transformers``' multinomial sampling draws from). ``generate`` runs it as a logits processor that
leaves one token possible per row, so transformers' own sampling step (batching, ``num_return_sequences``
expansion, KV cache, stopping) picks exactly that token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, ...): same inputs, same seed, on every machine."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class PerRowGumbelSampler(LogitsProcessor):
    """Chooses each row's next token by Gumbel-max on the warped scores; returns 0 there, ``-inf`` elsewhere.

    Row ``n``'s noise at its ``k``-th generated token is the ``k``-th draw of a generator seeded with
    ``row_seeds[n]``, whatever the other rows are. Tokens filtered by top-k/top-p (or suppressed by an
    earlier processor) are never chosen. Pass it to ``generate`` with no other warpers (temperature 1,
    top-k 0, top-p 1): softmax of the result is one-hot, so greedy or multinomial selection agree.
    """

    def __init__(
        self,
        row_seeds: Sequence[int],
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        device: torch.device | str = "cpu",
    ):
        if temperature <= 0:
            raise ValueError("temperature must be > 0 (use greedy decoding for temperature 0)")
        self.warpers = [TemperatureLogitsWarper(float(temperature))]
        if top_k and top_k > 0:
            self.warpers.append(TopKLogitsWarper(int(top_k)))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(float(top_p)))
        self.generators = []
        for seed in row_seeds:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seed))
            self.generators.append(generator)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = self.choose(scores).unsqueeze(1)  # [N, 1]
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen, 0.0)

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """Each row's next token ``[N]`` (long) from its scores ``[N, V]``: the warpers, then Gumbel-max.

        Advances every row's generator by one draw of V uniforms, whatever was chosen (the ``k``-th call
        draws each row's ``k``-th noise)."""
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{len(self.generators)} row seeds for {scores.shape[0]} rows")
        for warper in self.warpers:
            scores = warper(None, scores)  # transformers' temperature / top-k / top-p ignore input_ids
        vocab = scores.shape[1]
        uniform = torch.stack(
            [
                torch.rand(vocab, generator=g, device=scores.device, dtype=torch.float32)
                for g in self.generators
            ]
        )  # [N, V] in [0, 1)
        tiny = torch.finfo(torch.float32).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=tiny, max=1.0 - 2**-24)))
        return (scores.float() + gumbel).argmax(dim=-1)  # [N]


def seeds_per_observation(
    batch_size: int, seeds: Sequence[int] | None = None, generator_seed: int | None = None
) -> list[int]:
    """One seed per observation: ``seeds`` as given (one per observation), else ``derive_seed(generator_seed,
    b)``, else drawn from the global torch RNG (which advances)."""
    if seeds is not None:
        if len(seeds) != batch_size:
            raise ValueError(f"{len(seeds)} observation seeds for {batch_size} observations")
        return [int(s) for s in seeds]
    if generator_seed is not None:
        return [derive_seed(generator_seed, b) for b in range(batch_size)]
    return torch.randint(0, 2**62, (batch_size,)).tolist()


def row_seeds(observation_seeds: Sequence[int], num_samples: int) -> list[int]:
    """One seed per answer, observation-major: answer ``j`` of observation ``b`` gets (seed_b, j)."""
    return [derive_seed(seed, j) for seed in observation_seeds for j in range(num_samples)]
