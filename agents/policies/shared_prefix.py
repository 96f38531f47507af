"""Score G completions per prompt while running the image and the prompt once (GRPO's training forward).

In GRPO every observation (image + prompt, ``P`` tokens) has ``G`` sampled answers of at most ``T`` tokens,
and ``P`` is usually far larger than ``T`` (a 448x448 image alone is 256 vision tokens; answers are a few
dozen). The straightforward forward pass repeats the prompt for each answer: G x (P + T) tokens through
the decoder. Here the prompt runs once per observation, and the answers attend to its keys and values:

1. **Prompt pass** (B rows, left-padded): vision tower + decoder over the prompt with a KV cache, graph kept.
   Each layer's prompt keys/values ``[B, kv_heads, P, head_dim]`` are the shared prefix; the last prompt
   position's hidden state gives the logits of every answer's first token.
2. **Answer pass**: the G answers of observation b are laid side by side in *one* row of ``G * (T - 1)``
   tokens (the last answer token predicts nothing, so it is not fed). Each layer attends to
   ``[prefix keys of b | this row's keys]`` under a block mask: an answer token sees the real (unpadded)
   prompt tokens and the earlier tokens of its own answer, nothing else. No prefix key/value is copied
   per answer; the extra ``G*T x G*T`` masked scores are small when ``T << P``.
3. **Positions**: M-RoPE positions of the prompt come from the model's ``get_rope_index`` (which skips
   left padding); answer token t of observation b sits at ``next_position[b] + t`` on all three axes,
   exactly where the unshared forward (and generation) puts it.

The result equals the per-sequence computation up to float reordering, gradients included: the prompt's
activations receive the sum of the G answers' gradients, as G copies of it would.

Groups cut by micro-batching (observations with fewer than G answers in the batch) are padded with dummy
answer slots whose outputs are discarded. Needs the ``eager`` or ``sdpa`` attention implementation (a 4-D
mask is passed to the layers) and no HF gradient checkpointing in the decoder (it drops the KV cache; the
vision tower's blocks may be checkpointed; :func:`checkpointed_layers` checkpoints decoder layers with their
cache);
:func:`supports_shared_prefix` says whether a model qualifies, and the caller falls back otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

__all__ = ["checkpointed_layers", "shared_prefix_hidden", "supports_shared_prefix", "token_logprobs"]

# Logits are materialised for at most this many (token x vocabulary) entries at a time (~64 MB in float32).
LOGITS_CHUNK_ELEMENTS = 1 << 24


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """Whether :func:`shared_prefix_hidden` can run ``model`` (mask-based attention, no HF checkpointing)."""
    text_config = model.config.get_text_config()
    implementation = getattr(text_config, "_attn_implementation", None) or "eager"
    if implementation not in ("eager", "sdpa"):
        return False
    if getattr(text_config, "use_sliding_window", False):
        return False
    # checkpointed vision blocks are fine: only the decoder's KV cache must survive
    decoder = model.model.language_model
    checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in decoder.modules())
    return not (checkpointing and model.training)


class _PromptKV(DynamicCache):
    """The prompt pass's cache: each layer's keys/values are *set*, not appended to.

    The prompt pass fills every layer once, so setting is appending to nothing; but a checkpointed layer
    (:func:`checkpointed_layers`) runs again in backward, and must then store the same tensors, not a
    cache of twice the length.
    """

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        layer = self.layers[layer_idx]
        if not layer.is_initialized:
            layer.lazy_initialization(key_states, value_states)
        layer.keys, layer.values = key_states, value_states
        return key_states, value_states


@contextlib.contextmanager
def checkpointed_layers(layers: torch.nn.ModuleList, enabled: bool = True):
    """Within the block, each decoder layer recomputes its activations in backward (``torch.utils.checkpoint``,
    non-reentrant): only the layers' inputs stay alive. Unlike transformers' gradient checkpointing, the
    layers keep their cache argument, which the shared-prefix forward needs."""
    if not enabled:
        yield
        return
    for layer in layers:
        layer.forward = functools.partial(
            _maybe_checkpoint, layer.forward
        )  # an instance attribute: undone below
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def _maybe_checkpoint(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


class _PrefixKV:
    """A read-only KV cache for the answer pass: each layer's keys are ``[prefix | new]``, nothing is stored.

    Duck-types the two methods of ``transformers.Cache`` that the decoder layers call.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]):
        self.keys, self.values = keys, values

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return (
            torch.cat([self.keys[layer_idx], key_states], dim=-2),
            torch.cat([self.values[layer_idx], value_states], dim=-2),
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.keys[layer_idx].shape[-2])


def _layout(obs_index: torch.Tensor, num_obs: int) -> tuple[torch.Tensor, int]:
    """Slot of each completion within its observation's row, and the widest group (G_max)."""
    slot = torch.empty_like(obs_index)
    seen = [0] * num_obs
    for n, o in enumerate(obs_index.tolist()):
        slot[n] = seen[o]
        seen[o] += 1
    return slot, max(seen) if seen else 0


def shared_prefix_hidden(
    model: torch.nn.Module,
    *,
    prompt_ids: torch.Tensor,  # [B, P] left-padded
    prompt_mask: torch.Tensor,  # [B, P]
    prompt_mm_token_type_ids: torch.Tensor,  # [B, P]
    image_grid_thw: torch.Tensor,  # [B, 3]
    image_features: Any,  # get_image_features(..., return_dict=True) for the B images, or None
    pixel_values: torch.Tensor | None,  # used when image_features is None
    completion_ids: torch.Tensor,  # [N, T]
    completion_mask: torch.Tensor,  # [N, T]
    obs_index: torch.Tensor,  # [N] observation of each completion
    pad_token_id: int,
    checkpoint_layers: bool = False,
) -> torch.Tensor:
    """Final-norm hidden states ``[N, T, H]`` at the positions that predict each completion token.

    Row n, position t is the hidden state after prompt + completion[n, :t]; apply ``lm_head`` to get the
    logits of completion token t. Differentiable; equal to slicing the full per-sequence forward.
    ``checkpoint_layers``: recompute each decoder layer in backward (both passes), keeping only layer inputs.
    """
    inner = model.model  # Qwen2VLModel / Qwen2_5_VLModel
    language_model = inner.language_model
    text_config = model.config.get_text_config()
    device = prompt_ids.device
    num_obs, prompt_len = prompt_ids.shape
    n, completion_len = completion_ids.shape

    # 1. prompt pass, once per observation
    prompt_positions, _ = inner.get_rope_index(
        prompt_ids,
        mm_token_type_ids=prompt_mm_token_type_ids,
        image_grid_thw=image_grid_thw,
        attention_mask=prompt_mask,
    )  # [3, B, P]; padded positions are 0
    next_position = prompt_positions.amax(dim=(0, 2)) + 1  # [B]; the prompt ends with text tokens
    cache = _PromptKV(config=model.config)
    vision: dict[str, Any] = {}
    if image_features is not None:
        vision["mm_encoder_outputs"] = {"image": image_features}
    elif pixel_values is not None:
        vision["pixel_values"] = pixel_values
    with checkpointed_layers(language_model.layers, checkpoint_layers):
        prompt_out = inner(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=prompt_positions,
            mm_token_type_ids=prompt_mm_token_type_ids,
            image_grid_thw=image_grid_thw,
            past_key_values=cache,
            use_cache=True,
            **vision,
        )
    last_prompt_hidden = prompt_out.last_hidden_state[:, -1]  # [B, H]: left padding, the last token is real
    first = last_prompt_hidden[obs_index].unsqueeze(1)  # [N, 1, H]
    fed = completion_len - 1  # completion tokens fed to the model (the last one predicts nothing)
    if fed == 0 or n == 0:
        return first

    # 2. answer pass: observation b's answers side by side in one row of g_max * fed tokens
    slot, g_max = _layout(obs_index, num_obs)
    width = g_max * fed
    flat = (obs_index * width + slot * fed).unsqueeze(1) + torch.arange(fed, device=device)  # [N, fed]
    grid_ids = torch.full((num_obs * width,), pad_token_id, dtype=torch.long, device=device)
    grid_ids[flat.flatten()] = completion_ids[:, :fed].flatten()
    key_valid = torch.ones(num_obs * width, dtype=torch.bool, device=device)  # dummy slots: all valid
    key_valid[flat.flatten()] = completion_mask[:, :fed].flatten().bool()
    embeds = language_model.embed_tokens(grid_ids.view(num_obs, width))  # [B, W, H]

    t_in_slot = torch.arange(width, device=device) % fed
    slot_of = torch.arange(width, device=device) // fed
    positions = (next_position.unsqueeze(1) + t_in_slot).unsqueeze(0).expand(3, -1, -1)  # [3, B, W]
    own_answer = (slot_of[:, None] == slot_of[None, :]) & (t_in_slot[None, :] <= t_in_slot[:, None])  # [W, W]
    mask = torch.cat(
        [
            prompt_mask.bool()[:, None, :].expand(num_obs, width, prompt_len),
            own_answer[None] & key_valid.view(num_obs, 1, width),
        ],
        dim=-1,
    ).unsqueeze(1)  # [B, 1, W, P + W], True = attend
    if text_config._attn_implementation == "eager":
        mask = torch.zeros(mask.shape, dtype=embeds.dtype, device=device).masked_fill(
            ~mask, torch.finfo(embeds.dtype).min
        )
    layer_types = set(getattr(text_config, "layer_types", None) or ["full_attention"])
    prefix = _PrefixKV([layer.keys for layer in cache.layers], [layer.values for layer in cache.layers])
    with checkpointed_layers(language_model.layers, checkpoint_layers):
        answer_out = language_model(
            inputs_embeds=embeds,
            attention_mask={layer_type: mask for layer_type in layer_types},
            position_ids=positions,
            past_key_values=prefix,
            use_cache=False,
        )
    answer_hidden = answer_out.last_hidden_state.reshape(num_obs * width, -1)[flat]  # [N, fed, H]
    return torch.cat([first, answer_hidden], dim=1)  # [N, T, H]


def token_logprobs(
    hidden: torch.Tensor,  # [N, T, H] final-norm hidden states predicting each token
    token_ids: torch.Tensor,  # [N, T]
    lm_head: torch.nn.Module,
    *,
    temperature: float = 1.0,
    chunk_elements: int = LOGITS_CHUNK_ELEMENTS,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log softmax(lm_head(hidden) / temperature)[token] as float32 ``[N, T]``, never all logits at once.

    ``with_entropy``: also the entropy of each position's distribution, float32 ``[N, T]``, computed from the
    same chunk of logits: ``(logprobs, entropies)``; differentiable when grad is enabled (GRPO's
    ``entropy_coef`` bonus; ``top_entropy_quantile`` only reads it), which keeps at most one more chunk of
    probabilities for backward.

    The vocabulary projection and the float32 log-sum-exp run over chunks of tokens so that at most
    ``chunk_elements`` logits exist at a time (a 151k vocabulary x 512 tokens is 310 MB in float32 otherwise).
    With grad enabled and more than one chunk, each chunk is checkpointed: backward recomputes its logits
    instead of keeping them all alive (the "fused linear cross-entropy" trade: one extra head matmul).
    ``lm_head`` is called as a module, so its hooks apply.
    """
    n, length, size = hidden.shape
    flat_hidden = hidden.reshape(n * length, size)
    flat_ids = token_ids.reshape(n * length, 1)
    vocab = lm_head.out_features if hasattr(lm_head, "out_features") else lm_head.weight.shape[0]
    step = max(1, chunk_elements // max(1, vocab))

    def chunk_logprobs(h: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = lm_head(h).float()  # a float32 copy of this chunk only
        if temperature != 1.0:
            logits = logits / temperature
        log_normaliser = torch.logsumexp(logits, dim=-1)
        entropy = None
        if with_entropy:  # H = log Z - sum p * logits
            entropy = log_normaliser - (torch.softmax(logits, dim=-1) * logits).sum(-1)
        return logits.gather(-1, ids).squeeze(-1) - log_normaliser, entropy

    total = flat_hidden.shape[0]
    recompute = total > step and torch.is_grad_enabled() and flat_hidden.requires_grad
    parts = []
    for start in range(0, max(total, 1), step):  # one (maybe empty) chunk when total <= step
        h, ids = flat_hidden[start : start + step], flat_ids[start : start + step]
        if recompute:
            parts.append(checkpoint(chunk_logprobs, h, ids, use_reentrant=False))
        else:
            parts.append(chunk_logprobs(h, ids))
    logprobs = torch.cat([p[0] for p in parts]).view(n, length)
    if not with_entropy:
        return logprobs
    return logprobs, torch.cat([p[1] for p in parts]).view(n, length)
