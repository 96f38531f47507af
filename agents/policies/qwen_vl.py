"""The Qwen2-VL / Qwen2.5-VL policy: prompts in, sampled answers and their log-probabilities out.

An observation is ``{"image": HxWx3 uint8 array (or PIL image), "prompt": str}``. The policy writes the
chat (system turn from the chat template, user turn = image then prompt, then the assistant header),
samples ``G`` answers per observation, and recomputes the per-token log-probabilities of those answers
under any model of the same architecture (the policy being trained, or a frozen reference copy).

Shapes (``B``, ``G``, ``N``, ``P``, ``T``) and the :class:`~agents.rollout.Rollout` it returns: ``agents/rollout.py``.

- Vision special tokens (``<|image_pad|>`` ...) are never sampled: a generated ``<|image_pad|>`` would make
  the next forward pass crash ("Image features and image tokens do not match").
- Left padding is handled by the model itself: Qwen2-VL's ``get_rope_index`` computes the 3-D M-RoPE
  positions over the attended tokens only, so a padded sequence gets the same positions (and, within
  float tolerance, the same log-probs) as the same sequence alone. ``tests/agents/test_policy.py`` checks it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.config import SetupError
from agents.model_folder import check_model_source, check_safetensors
from agents.policies.processor import load_processor
from agents.policies.sampling import PerRowGumbelSampler, row_seeds, seeds_per_observation
from agents.policies.shared_prefix import (
    checkpointed_layers,
    shared_prefix_hidden,
    supports_shared_prefix,
    token_logprobs,
)
from agents.rollout import Rollout
from perception_env.formats import STOP_TOKENS
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

__all__ = [
    "QwenVLPolicy",
    "VISION_SPECIAL_TOKENS",
    "check_model_source",
    "check_safetensors",
    "count_parameters",
]

VISION_SPECIAL_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# STOP_TOKENS (the env's, which its answer formats strip) end an answer: kept in completion_ids/mask (the
# model must learn to stop), not in texts.


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def _resolve_dtype(dtype: str | torch.dtype | None):
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}, 'auto' or a torch.dtype"
        ) from None


def to_pil_image(image: Any):
    """An observation's image (HxWx3 uint8 array or PIL image) as an RGB PIL image; ValueError otherwise."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


class QwenVLPolicy:
    """A Qwen2-VL / Qwen2.5-VL model with its processor, as a sampling policy with log-probs."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        *,
        shared_prefix: bool = True,
        prefill_once: bool = True,
        autocast_dtype: torch.dtype | None = None,
        checkpoint_decoder: bool = False,
    ):
        """``shared_prefix``: the default of ``completion_logprobs(shared_prefix=...)`` (prompt run once per
        group in the training forward). ``prefill_once``: ``generate`` encodes each image and prefills each
        prompt once per group, then samples the G answers from copies of that KV cache (transformers'
        ``num_return_sequences`` repeats the prompt G times *before* the prefill). ``autocast_dtype``:
        e.g. ``torch.bfloat16`` runs the log-prob forward under ``torch.autocast`` (GPU-oriented; keep the
        weights in float32). ``checkpoint_decoder``: recompute each decoder layer in backward (set by
        ``from_pretrained(activation_checkpointing=True)``), in the shared-prefix and per-sequence paths.
        """
        self.model = model
        self.processor = processor
        self.shared_prefix = shared_prefix
        self.prefill_once = prefill_once
        self.autocast_dtype = _resolve_dtype(autocast_dtype)
        self.checkpoint_decoder = checkpoint_decoder
        # FSDP2 (agents/distributed.py) sets it: every rank keeps stepping until all have stopped
        self.synced_gpus = False
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        tok = self.tokenizer
        self.pad_token_id: int = (
            tok.pad_token_id if tok.pad_token_id is not None else tok.convert_tokens_to_ids("<|endoftext|>")
        )
        self.stop_token_ids: list[int] = [tok.convert_tokens_to_ids(t) for t in STOP_TOKENS]
        self.vision_token_ids: list[int] = [tok.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS]
        vocab = tok.get_vocab()
        missing = [t for t in STOP_TOKENS + VISION_SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise SetupError(
                f"the tokenizer of {getattr(tok, 'name_or_path', '?')} lacks the Qwen-VL special tokens "
                f"{missing} (a Qwen-VL checkpoint's tokenizer.json holds them)"
            )

    # ------------------------------------------------------------------------------------------------
    # loading / saving

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: str | torch.dtype | None = "float32",
        device: str | torch.device = "cpu",
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        attn_implementation: str | None = None,
        activation_checkpointing: bool | str = False,
        **options: Any,
    ) -> QwenVLPolicy:
        """Load model and processor from a local folder or a hub id (same code path).

        ``min_pixels`` / ``max_pixels`` bound the image area after the processor's resize to multiples of 28.
        ``attn_implementation``: None (transformers' default, sdpa), "eager", "sdpa" or "flash_attention_2".
        ``activation_checkpointing``: recompute activations in backward (less memory, more compute):
        ``"vision"`` for the vision tower's blocks only, ``True`` / ``"all"`` for the decoder's layers too
        (``checkpoint_decoder``). Both keep the shared-prefix forward. ``options``: ``shared_prefix``, ``prefill_once``, ``autocast_dtype`` (see
        ``__init__``).
        """
        from transformers import AutoModelForImageTextToText

        name_or_path = check_model_source(name_or_path, option="name_or_path")
        kwargs: dict[str, Any] = {"dtype": _resolve_dtype(dtype)}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), **kwargs)
        model.to(device)
        model.eval()
        if activation_checkpointing not in (False, True, "all", "vision"):
            raise ValueError(
                f"activation_checkpointing must be False, True/'all' or 'vision', got {activation_checkpointing!r}"
            )
        if activation_checkpointing:
            # the ViT's blocks through transformers; decoder layers (True / "all") through
            # shared_prefix.checkpointed_layers, which, unlike transformers', keeps the shared-prefix cache
            visual = model.model.visual
            # transformers 5.x: activation_checkpointing_enable (gradient_checkpointing_enable deprecated)
            enable = (
                getattr(visual, "activation_checkpointing_enable", None)
                or visual.gradient_checkpointing_enable
            )
            enable({"use_reentrant": False})
        processor = load_processor(
            name_or_path, min_pixels=min_pixels, max_pixels=max_pixels, model_type=model.config.model_type
        )
        options.setdefault("checkpoint_decoder", activation_checkpointing in (True, "all"))
        return cls(model, processor, **options)

    def save_pretrained(
        self, out_dir: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None
    ) -> Path:
        """Model and processor, loadable by :meth:`from_pretrained`. ``state_dict``: the weights to write
        instead of the model's own (FSDP2 passes the gathered full tensors)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if state_dict is None:
            self.model.save_pretrained(out)
        else:
            self.model.save_pretrained(out, state_dict=state_dict)
        self.processor.save_pretrained(out)
        return out

    @property
    def pixel_bounds(self) -> tuple[int, int]:
        """(min_pixels, max_pixels): the image area range of the processor's resize (multiples of 28)."""
        size = self.processor.image_processor.size
        return int(size["shortest_edge"]), int(size["longest_edge"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return count_parameters(self.model, trainable_only=trainable_only)

    # ------------------------------------------------------------------------------------------------
    # prompts

    def chat_text(self, prompt: str) -> str:
        """The templated prompt (one ``<|image_pad|>`` placeholder, which the processor expands)."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompts(self, observations: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Tokenise B observations (one image each) into left-padded model inputs on the policy's device.

        Returns input_ids [B, P], attention_mask [B, P], mm_token_type_ids [B, P], pixel_values
        [sum of patches, D] (float, model dtype) and image_grid_thw [B, 3].
        """
        if len(observations) == 0:
            raise ValueError("no observations")
        texts = [self.chat_text(str(obs["prompt"])) for obs in observations]
        images = [to_pil_image(obs["image"]) for obs in observations]
        batch = self.processor(
            text=texts, images=images, padding=True, padding_side="left", return_tensors="pt"
        )
        device = self.device
        out = {
            "input_ids": batch["input_ids"].to(device),
            "attention_mask": batch["attention_mask"].to(device),
            "mm_token_type_ids": batch["mm_token_type_ids"].to(device),
            "pixel_values": batch["pixel_values"].to(device=device, dtype=self.model.dtype),
            "image_grid_thw": batch["image_grid_thw"].to(device),
        }
        return out

    # ------------------------------------------------------------------------------------------------
    # sampling

    @torch.no_grad()
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
        generator_seed: int | None = None,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        """Sample ``num_samples`` answers for each observation (observation-major order).

        ``do_sample=False`` or ``temperature <= 0``: greedy decoding (G identical answers).
        ``top_k=0`` disables top-k. Sampling is seeded per answer (``agents/policies/sampling.py``): answer
        ``j`` of observation ``b`` depends only on the model, that observation and ``(seed_b, j)``, never on
        what else is in the batch. ``observation_seeds`` gives ``seed_b`` directly (one per observation);
        else ``generator_seed`` derives them as ``derive_seed(generator_seed, b)``; with neither, they are
        drawn from the global torch RNG (which advances).
        """
        from transformers import GenerationConfig, LogitsProcessorList

        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        greedy = (not do_sample) or temperature <= 0
        inputs = self.encode_prompts(observations)
        batch_size = inputs["input_ids"].shape[0]
        # Every option is explicit: unset ones would be filled from the checkpoint's generation_config.json
        # (Qwen2-VL-Instruct ships temperature 0.01, top-k 1, repetition penalty 1.05), and the answers'
        # log-probs must be those of the model's own distribution. Temperature, top-k and top-p act inside
        # PerRowGumbelSampler, which leaves one token possible per row.
        # (greedy decoding applies no warper; there, transformers' own defaults keep it from warning that
        # a checkpoint's sampling settings are unused)
        neutral_warpers = {"temperature": 1.0, "top_k": 50 if greedy else 0, "top_p": 1.0}
        generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            num_return_sequences=1,
            **neutral_warpers,
            repetition_penalty=1.0,
            eos_token_id=self.stop_token_ids,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.pad_token_id,
            suppress_tokens=self.vision_token_ids,
            use_cache=True,
        )
        was_training = self.model.training
        self.model.eval()
        try:
            if greedy:
                # G identical answers: decode once, repeat
                sequences = self.model.generate(
                    **inputs, generation_config=generation_config, synced_gpus=self.synced_gpus
                )
                sequences = sequences.repeat_interleave(num_samples, dim=0)
            else:
                seeds = seeds_per_observation(batch_size, observation_seeds, generator_seed)
                sampler = PerRowGumbelSampler(
                    row_seeds(seeds, num_samples), temperature, top_k, top_p, device=self.device
                )
                processors = LogitsProcessorList([sampler])
                # transformers' multinomial then has one choice per row, but still draws from the global
                # RNG: fork it, so that sampling leaves the caller's random state as it was
                devices = [self.device] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):
                    if self.prefill_once:
                        sequences = self._generate_prefill_once(
                            inputs, num_samples, generation_config, processors
                        )
                    else:
                        config = copy.deepcopy(generation_config)
                        config.num_return_sequences = num_samples  # transformers repeats the prompt G times
                        sequences = self.model.generate(
                            **inputs,
                            generation_config=config,
                            logits_processor=processors,
                            synced_gpus=self.synced_gpus,
                        )
        finally:
            self.model.train(was_training)

        prompt_len = inputs["input_ids"].shape[1]
        return self.rollout_from_generated(inputs, sequences[:, prompt_len:], num_samples)

    def rollout_from_generated(
        self, inputs: Mapping[str, torch.Tensor], generated: torch.Tensor, num_samples: int
    ) -> Rollout:
        """The Rollout of the tokens ``generated`` ``[B*G, T']`` (observation-major) for ``encode_prompts``'
        ``inputs``: each row cut after its first stop token (kept), padded, decoded."""
        completion_ids, completion_mask = self._completion_from_sequences(generated)
        texts = self.decode_completions(completion_ids, completion_mask)
        batch_size = inputs["input_ids"].shape[0]
        obs_index = torch.arange(batch_size, device=completion_ids.device).repeat_interleave(num_samples)
        return Rollout.from_prompt_inputs(
            inputs, completion_ids, completion_mask, obs_index, texts, num_samples
        )

    def prefill(self, inputs: Mapping[str, torch.Tensor]):
        """Encode each image and run each prompt but its last token through the model, once per observation.

        Returns the ``DynamicCache`` of the ``P - 1`` tokens (B rows) and the M-RoPE deltas ``[B, 1]``: with
        ``p_b`` real (unpadded) prompt tokens, the last one (text) sits at position ``p_b - 1 + delta_b`` and
        answer token ``k`` at ``p_b + k + delta_b``.
        Leaves the model's ``rope_deltas`` as it found them.
        """
        from transformers import DynamicCache

        model = self.model
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

    def _generate_prefill_once(
        self, inputs: Mapping[str, torch.Tensor], repeats: int, generation_config, logits_processor=None
    ) -> torch.Tensor:
        """``model.generate`` with the G-fold expansion moved after the prefill.

        The image is encoded and the prompt (all but its last token) prefilled once per observation; the KV
        cache and the M-RoPE deltas are then repeated G times and ``generate`` continues from the cache with
        the last prompt token, computing the same logits as ``num_return_sequences=G`` (up to float
        reordering) at 1/G of the prefill cost. Returns [B*G, P + new tokens], observation-major.
        """
        model = self.model
        cache, rope_deltas = self.prefill(inputs)
        cache.batch_repeat_interleave(repeats)
        model.model.rope_deltas = rope_deltas.repeat_interleave(repeats, dim=0)
        config = copy.deepcopy(generation_config)
        config.num_return_sequences = 1  # the rows are already repeated
        # no pixel_values / image_grid_thw: every vision token is in the cache, positions come from the deltas
        return model.generate(
            input_ids=inputs["input_ids"].repeat_interleave(repeats, dim=0),
            attention_mask=inputs["attention_mask"].repeat_interleave(repeats, dim=0),
            past_key_values=cache,
            generation_config=config,
            logits_processor=logits_processor,
            synced_gpus=self.synced_gpus,
        )

    def teacher_forcing(self, observations: Sequence[Mapping[str, Any]], answers: Sequence[str]) -> Rollout:
        """A Rollout whose completions are the given answers (one per observation), for supervised training.

        Each answer is tokenised as the model would write it (special tokens such as ``<|box_start|>`` are
        parsed as single tokens) and followed by ``<|im_end|>``, so the model also learns to stop.
        """
        if len(answers) != len(observations):
            raise ValueError(f"{len(observations)} observations but {len(answers)} answers")
        inputs = self.encode_prompts(observations)
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        rows = [self.tokenizer.encode(str(a), add_special_tokens=False) + [im_end] for a in answers]
        width = max(len(r) for r in rows)
        device = inputs["input_ids"].device
        completion_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long, device=device)
        completion_mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            completion_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long, device=device)
            completion_mask[i, : len(row)] = 1
        obs_index = torch.arange(len(rows), device=device)
        return Rollout.from_prompt_inputs(
            inputs, completion_ids, completion_mask, obs_index, [str(a) for a in answers], num_samples=1
        )

    def _completion_from_sequences(self, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask each generated row after its first stop token; pad the rest; drop all-padding columns."""
        is_stop = torch.zeros_like(generated, dtype=torch.bool)
        for token_id in self.stop_token_ids:
            is_stop |= generated == token_id
        # a token is real if no stop token came strictly before it
        stops_before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()
        mask = (stops_before == 0).long()  # [N, T]
        ids = torch.where(mask.bool(), generated, torch.full_like(generated, self.pad_token_id))
        lengths = mask.sum(1)
        width = max(int(lengths.max().item()) if lengths.numel() else 0, 1)
        return ids[:, :width].contiguous(), mask[:, :width].contiguous()

    def decode_completions(self, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> list[str]:
        """Decode answers, keeping answer-format special tokens (``<|box_start|>`` ...), dropping stop/pad."""
        drop = set(self.stop_token_ids) | {self.pad_token_id}
        texts = []
        for ids, mask in zip(completion_ids.tolist(), completion_mask.tolist()):
            kept = [i for i, m in zip(ids, mask) if m and i not in drop]
            texts.append(
                self.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            )
        return texts

    # ------------------------------------------------------------------------------------------------
    # log-probabilities

    def completion_logprobs(
        self,
        rollout_or_inputs: Rollout | Mapping[str, Any],
        *,
        model: torch.nn.Module | None = None,
        temperature: float = 1.0,
        share_vision: bool = True,
        shared_prefix: bool | None = None,
        with_entropy: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probabilities [N, T] of the completion tokens under ``model`` (default: policy's).

        Differentiable when called with grad enabled. Entries where ``completion_mask == 0`` are 0.
        ``rollout_or_inputs``: a ``Rollout`` or a mapping with the same field names.
        ``temperature``: the logits are divided by it first (use the sampling temperature to score the
        distribution that was actually sampled; 1.0 scores the model's own distribution).
        ``share_vision``: encode each observation's image once and reuse the features for its G completions
        (exactly the same values and gradients as repeating ``pixel_values``, at 1/G of the vision cost).
        ``shared_prefix``: also run each observation's *prompt* through the decoder once, the G completions
        attending to its keys/values (``agents/policies/shared_prefix.py``; same values and gradients within
        float tolerance). None: the policy's default (``self.shared_prefix``, True), falling back to the
        per-sequence forward where the model cannot (flash-attention, HF gradient checkpointing).
        ``with_entropy``: also each position's entropy [N, T] (no grad; 0 where the mask is 0), from the same
        logits: ``(logprobs, entropies)`` (GRPO's ``top_entropy_quantile``).

        Per sequence, the full sequence is prompt (left-padded) + completion (right-padded) and
        ``mm_token_type_ids`` is extended with zeros. Either way the vocabulary projection runs only at the T
        positions that predict completion tokens, never over the prompt, and in chunks of tokens
        (``token_logprobs``), so no full [N, T, V] float32 logits tensor is built. Under
        ``self.autocast_dtype`` (e.g. torch.bfloat16, for GPUs) the forward runs in ``torch.autocast``.
        """
        model = self.model if model is None else model
        r = rollout_or_inputs
        get = (lambda k: r[k]) if isinstance(r, Mapping) else (lambda k: getattr(r, k))
        device = next(model.parameters()).device
        obs_index = get("obs_index").to(device)
        completion_ids = get("completion_ids").to(device)  # [N, T]
        completion_mask = get("completion_mask").to(device)  # [N, T]
        image_grid_thw = get("image_grid_thw").to(device)  # [B, 3]
        pixel_values = get("pixel_values").to(device=device, dtype=model.dtype)
        use_shared = self.shared_prefix if shared_prefix is None else shared_prefix
        use_shared = use_shared and supports_shared_prefix(model)

        with self._autocast(device):
            if use_shared:
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
                    pad_token_id=self.pad_token_id,
                    checkpoint_layers=self.checkpoint_decoder,
                )  # [N, T, H]
            else:
                hidden = self._per_sequence_hidden(
                    model, get, obs_index, completion_ids, completion_mask, image_grid_thw, pixel_values,
                    share_vision,
                )  # fmt: skip
            scores = token_logprobs(
                hidden, completion_ids, model.lm_head, temperature=temperature, with_entropy=with_entropy
            )
        if with_entropy:
            return tuple(values * completion_mask.to(values.dtype) for values in scores)
        return scores * completion_mask.to(scores.dtype)

    def _per_sequence_hidden(
        self, model, get, obs_index, completion_ids, completion_mask, image_grid_thw, pixel_values,
        share_vision,
    ) -> torch.Tensor:  # fmt: skip
        """Final hidden states [N, T, H] predicting the completion tokens, one sequence per completion."""
        device = completion_ids.device
        prompt_ids = get("prompt_ids").to(device)[obs_index]  # [N, P]
        prompt_mask = get("prompt_mask").to(device)[obs_index]  # [N, P]
        prompt_mm = get("prompt_mm_token_type_ids").to(device)[obs_index]  # [N, P]
        prompt_len, completion_len = prompt_ids.shape[1], completion_ids.shape[1]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, P+T]
        attention_mask = torch.cat([prompt_mask, completion_mask.to(prompt_mask.dtype)], dim=1)
        mm_token_type_ids = torch.cat(
            [prompt_mm, torch.zeros_like(completion_ids, dtype=prompt_mm.dtype)], dim=1
        )
        forward_kwargs: dict[str, Any] = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            mm_token_type_ids=mm_token_type_ids,
            image_grid_thw=image_grid_thw[obs_index],
            use_cache=False,
        )
        if share_vision:
            forward_kwargs["mm_encoder_outputs"] = {
                "image": self._image_features(model, pixel_values, image_grid_thw, obs_index)
            }
        else:
            forward_kwargs["pixel_values"] = _repeat_pixel_values(pixel_values, image_grid_thw, obs_index)
        with checkpointed_layers(model.model.language_model.layers, self.checkpoint_decoder):
            hidden = model.model(**forward_kwargs).last_hidden_state  # [N, P+T, H]
        # hidden state at position p predicts token p+1: positions P-1 .. P+T-2 predict the completion
        return hidden[:, prompt_len - 1 : prompt_len + completion_len - 1]

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    @staticmethod
    def _image_features(model, pixel_values, image_grid_thw, obs_index):
        """Vision features of each observation's image, computed once, listed once per completion."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        features = model.get_image_features(pixel_values, image_grid_thw, return_dict=True).pooler_output
        per_completion = [features[int(i)] for i in obs_index.tolist()]
        return BaseModelOutputWithPooling(pooler_output=per_completion)


def _repeat_pixel_values(
    pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, obs_index: torch.Tensor
) -> torch.Tensor:
    """pixel_values hold all images' flattened patches back to back: pick each completion's block."""
    counts = image_grid_thw.prod(-1).tolist()
    blocks = torch.split(pixel_values, counts, dim=0)
    return torch.cat([blocks[int(i)] for i in obs_index.tolist()], dim=0)
