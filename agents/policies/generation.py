"""Sampling answers from a Qwen-VL model: the generation options, the three decode paths (greedy; G answers
from one prefill per observation; transformers' ``num_return_sequences``) and each row cut at its stop token.

Inputs are ``QwenVLPolicy.encode_prompts``' (left-padded ``[B, P]`` prompts with their images); the
sequences returned are ``[B*G, P + T']``, observation-major. Sampling is seeded per answer
(``agents/policies/sampling.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.policies.sampling import PerRowGumbelSampler, row_seeds


def generation_config(
    *,
    max_new_tokens: int,
    greedy: bool,
    stop_token_ids: Sequence[int],
    pad_token_id: int,
    suppress_token_ids: Sequence[int],
):
    """transformers' ``GenerationConfig`` with every option explicit: unset ones would be filled from the
    checkpoint's generation_config.json (Qwen2-VL-Instruct ships temperature 0.01, top-k 1, repetition penalty
    1.05), and the answers' log-probs must be those of the model's own distribution. Temperature, top-k and
    top-p act inside :class:`PerRowGumbelSampler`, which leaves one token possible per row. ``suppress_token_ids``:
    never sampled (the vision tokens: a generated ``<|image_pad|>`` breaks the next forward)."""
    from transformers import GenerationConfig

    # greedy decoding applies no warper; there, transformers' own defaults keep it from warning that a
    # checkpoint's sampling settings are unused
    neutral_warpers = {"temperature": 1.0, "top_k": 50 if greedy else 0, "top_p": 1.0}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        num_return_sequences=1,
        **neutral_warpers,
        repetition_penalty=1.0,
        eos_token_id=list(stop_token_ids),
        pad_token_id=pad_token_id,
        bos_token_id=pad_token_id,
        suppress_tokens=list(suppress_token_ids),
        use_cache=True,
    )


@torch.no_grad()
def sample_sequences(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    config: Any,
    *,
    num_samples: int,
    seeds: Sequence[int] | None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    prefill_once: bool = True,
    synced_gpus: bool = False,
) -> torch.Tensor:
    """``num_samples`` sequences per observation, ``[B*G, P + T']``, under ``config``
    (:func:`generation_config`), the model in eval mode meanwhile.

    ``seeds``: one per observation (answer ``j`` of observation ``b`` samples from ``(seeds[b], j)``); None
    decodes greedily once and repeats it G times. ``prefill_once``: encode each image and prefill each prompt
    once per group (:func:`generate_prefill_once`), else transformers repeats the prompt G times first.
    ``synced_gpus``: FSDP2's: every rank keeps stepping until all have stopped."""
    from transformers import LogitsProcessorList

    was_training = model.training
    model.eval()
    try:
        if seeds is None:  # G identical answers: decode once, repeat
            sequences = model.generate(**inputs, generation_config=config, synced_gpus=synced_gpus)
            return sequences.repeat_interleave(num_samples, dim=0)
        device = next(model.parameters()).device
        sampler = PerRowGumbelSampler(row_seeds(seeds, num_samples), temperature, top_k, top_p, device=device)
        processors = LogitsProcessorList([sampler])
        # transformers' multinomial then has one choice per row, but still draws from the global RNG: fork
        # it, so that sampling leaves the caller's random state as it was
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if prefill_once:
                return generate_prefill_once(model, inputs, num_samples, config, processors, synced_gpus)
            config = copy.deepcopy(config)
            config.num_return_sequences = num_samples  # transformers repeats the prompt G times
            return model.generate(
                **inputs, generation_config=config, logits_processor=processors, synced_gpus=synced_gpus
            )
    finally:
        model.train(was_training)


def prefill(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]):
    """Encode each image and run each prompt but its last token through the model, once per observation.

    Returns the ``DynamicCache`` of the ``P - 1`` tokens (B rows) and the M-RoPE deltas ``[B, 1]``: with
    ``p_b`` real (unpadded) prompt tokens, the last one (text) sits at position ``p_b - 1 + delta_b`` and
    answer token ``k`` at ``p_b + k + delta_b``.
    Leaves the model's ``rope_deltas`` as it found them.
    """
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    saved = model.model.rope_deltas
    model(
        input_ids=inputs["input_ids"][:, :-1],
        attention_mask=inputs["attention_mask"][:, :-1],
        mm_token_type_ids=inputs["mm_token_type_ids"][:, :-1],
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    # the prompt ends with text, so the deltas of P-1 tokens are those of P tokens
    rope_deltas = model.model.rope_deltas
    model.model.rope_deltas = saved
    return cache, rope_deltas


def generate_prefill_once(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    repeats: int,
    config: Any,
    logits_processor: Any = None,
    synced_gpus: bool = False,
) -> torch.Tensor:
    """``model.generate`` with the G-fold expansion moved after the prefill.

    The image is encoded and the prompt (all but its last token) prefilled once per observation; the KV
    cache and the M-RoPE deltas are then repeated G times and ``generate`` continues from the cache with
    the last prompt token, computing the same logits as ``num_return_sequences=G`` (up to float
    reordering) at 1/G of the prefill cost. Returns [B*G, P + new tokens], observation-major.
    """
    cache, rope_deltas = prefill(model, inputs)
    cache.batch_repeat_interleave(repeats)
    model.model.rope_deltas = rope_deltas.repeat_interleave(repeats, dim=0)
    config = copy.deepcopy(config)
    config.num_return_sequences = 1  # the rows are already repeated
    # no pixel_values / image_grid_thw: every vision token is in the cache, positions come from the deltas
    return model.generate(
        input_ids=inputs["input_ids"].repeat_interleave(repeats, dim=0),
        attention_mask=inputs["attention_mask"].repeat_interleave(repeats, dim=0),
        past_key_values=cache,
        generation_config=config,
        logits_processor=logits_processor,
        synced_gpus=synced_gpus,
    )


def cut_at_stop(
    generated: torch.Tensor, stop_token_ids: Sequence[int], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Completion ids and mask ``[N, T]`` of the generated tokens ``[N, T']``: each row kept up to and with
    its first stop token (the model must learn to stop), padded after it; all-padding columns dropped."""
    is_stop = torch.zeros_like(generated, dtype=torch.bool)
    for token_id in stop_token_ids:
        is_stop |= generated == token_id
    # a token is real if no stop token came strictly before it
    stops_before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()
    mask = (stops_before == 0).long()  # [N, T']
    ids = torch.where(mask.bool(), generated, torch.full_like(generated, pad_token_id))
    lengths = mask.sum(1)
    width = max(int(lengths.max().item()) if lengths.numel() else 0, 1)
    return ids[:, :width].contiguous(), mask[:, :width].contiguous()
