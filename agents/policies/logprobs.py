"""Per-token log-probabilities of sampled answers under a Qwen-VL model: the training forward.

Two paths give the final hidden states ``[N, T, H]`` that predict the ``T`` completion tokens: the shared
prefix (each observation's prompt through the decoder once, its G answers attending to it:
``agents/policies/shared_prefix.py``) and one sequence per answer (prompt + answer), where the model cannot
share (flash-attention, HF gradient checkpointing). Either way each image is encoded once per observation
when ``share_vision``, and the vocabulary projection runs only at those T positions, in chunks
(``token_logprobs``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from agents.policies.shared_prefix import (
    checkpointed_layers,
    shared_prefix_hidden,
    supports_shared_prefix,
    token_logprobs,
)


def completion_logprobs(
    model: torch.nn.Module,
    rollout_or_inputs: Any,
    *,
    pad_token_id: int,
    temperature: float = 1.0,
    share_vision: bool = True,
    shared_prefix: bool = True,
    checkpoint_decoder: bool = False,
    autocast_dtype: torch.dtype | None = None,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Log-probs ``[N, T]`` of the completion tokens under ``model`` (0 where ``completion_mask`` is 0), and
    with ``with_entropy`` each position's entropy ``[N, T]``; ``QwenVLPolicy.completion_logprobs`` documents
    the options. ``shared_prefix``: wanted (used where :func:`supports_shared_prefix`)."""
    r = rollout_or_inputs
    get = (lambda k: r[k]) if isinstance(r, Mapping) else (lambda k: getattr(r, k))
    device = next(model.parameters()).device
    obs_index = get("obs_index").to(device)
    completion_ids = get("completion_ids").to(device)  # [N, T]
    completion_mask = get("completion_mask").to(device)  # [N, T]
    image_grid_thw = get("image_grid_thw").to(device)  # [B, 3]
    pixel_values = get("pixel_values").to(device=device, dtype=model.dtype)

    with autocast(device, autocast_dtype):
        if shared_prefix and supports_shared_prefix(model):
            features = (
                model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
                if share_vision
                else None
            )  # one entry per observation
            hidden = shared_prefix_hidden(
                model,
                prompt_ids=get("prompt_ids").to(device),
                prompt_mask=get("prompt_mask").to(device),
                prompt_mm_token_type_ids=get("prompt_mm_token_type_ids").to(device),
                image_grid_thw=image_grid_thw,
                image_features=features,
                pixel_values=None if share_vision else pixel_values,
                completion_ids=completion_ids,
                completion_mask=completion_mask,
                obs_index=obs_index,
                pad_token_id=pad_token_id,
                checkpoint_layers=checkpoint_decoder,
            )  # [N, T, H]
        else:
            hidden = per_sequence_hidden(
                model, get, obs_index, completion_ids, completion_mask, image_grid_thw, pixel_values,
                share_vision, checkpoint_decoder,
            )  # fmt: skip
        scores = token_logprobs(
            hidden, completion_ids, model.lm_head, temperature=temperature, with_entropy=with_entropy
        )
    if with_entropy:
        return tuple(values * completion_mask.to(values.dtype) for values in scores)
    return scores * completion_mask.to(scores.dtype)


def per_sequence_hidden(
    model: torch.nn.Module,
    get: Callable[[str], torch.Tensor],
    obs_index: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    image_grid_thw: torch.Tensor,
    pixel_values: torch.Tensor,
    share_vision: bool,
    checkpoint_decoder: bool = False,
) -> torch.Tensor:
    """Final hidden states [N, T, H] predicting the completion tokens, one sequence per completion: the
    prompt (left-padded) then the completion (right-padded), ``mm_token_type_ids`` extended with zeros.
    ``get``: the rollout's field by name (prompt_ids, prompt_mask, prompt_mm_token_type_ids)."""
    device = completion_ids.device
    prompt_ids = get("prompt_ids").to(device)[obs_index]  # [N, P]
    prompt_mask = get("prompt_mask").to(device)[obs_index]  # [N, P]
    prompt_mm = get("prompt_mm_token_type_ids").to(device)[obs_index]  # [N, P]
    prompt_len, completion_len = prompt_ids.shape[1], completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, P+T]
    attention_mask = torch.cat([prompt_mask, completion_mask.to(prompt_mask.dtype)], dim=1)
    mm_token_type_ids = torch.cat([prompt_mm, torch.zeros_like(completion_ids, dtype=prompt_mm.dtype)], dim=1)
    forward_kwargs: dict[str, Any] = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        mm_token_type_ids=mm_token_type_ids,
        image_grid_thw=image_grid_thw[obs_index],
        use_cache=False,
    )
    if share_vision:
        forward_kwargs["mm_encoder_outputs"] = {
            "image": image_features_per_completion(model, pixel_values, image_grid_thw, obs_index)
        }
    else:
        forward_kwargs["pixel_values"] = repeat_pixel_values(pixel_values, image_grid_thw, obs_index)
    with checkpointed_layers(model.model.language_model.layers, checkpoint_decoder):
        hidden = model.model(**forward_kwargs).last_hidden_state  # [N, P+T, H]
    # hidden state at position p predicts token p+1: positions P-1 .. P+T-2 predict the completion
    return hidden[:, prompt_len - 1 : prompt_len + completion_len - 1]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def image_features_per_completion(model, pixel_values, image_grid_thw, obs_index):
    """Vision features of each observation's image, computed once, listed once per completion."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    features = model.get_image_features(pixel_values, image_grid_thw, return_dict=True).pooler_output
    per_completion = [features[int(i)] for i in obs_index.tolist()]
    return BaseModelOutputWithPooling(pooler_output=per_completion)


def repeat_pixel_values(
    pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, obs_index: torch.Tensor
) -> torch.Tensor:
    """pixel_values hold all images' flattened patches back to back: pick each completion's block."""
    counts = image_grid_thw.prod(-1).tolist()
    blocks = torch.split(pixel_values, counts, dim=0)
    return torch.cat([blocks[int(i)] for i in obs_index.tolist()], dim=0)
