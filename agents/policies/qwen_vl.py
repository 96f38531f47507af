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

This class holds the model, its processor and tokens, and writes the prompts; the model's loading is in
``loading.py``, the decode paths in ``generation.py``, the training forward's log-probs in ``logprobs.py``
(pyproject.toml's ``policies-layers``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.config import SetupError
from agents.model_folder import check_model_source, check_safetensors
from agents.policies.generation import (
    cut_at_stop,
    generate_prefill_once,
    generation_config,
    prefill,
    sample_sequences,
)
from agents.policies.loading import count_parameters, load_model, resolve_dtype
from agents.policies.logprobs import completion_logprobs
from agents.policies.processor import load_processor
from agents.policies.sampling import seeds_per_observation
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
        self.autocast_dtype = resolve_dtype(autocast_dtype)
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
        name_or_path = check_model_source(name_or_path, option="name_or_path")
        model = load_model(
            name_or_path,
            dtype=dtype,
            device=device,
            attn_implementation=attn_implementation,
            activation_checkpointing=activation_checkpointing,
        )
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
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        greedy = (not do_sample) or temperature <= 0
        inputs = self.encode_prompts(observations)
        batch_size = inputs["input_ids"].shape[0]
        config = generation_config(
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            stop_token_ids=self.stop_token_ids,
            pad_token_id=self.pad_token_id,
            suppress_token_ids=self.vision_token_ids,
        )
        sequences = sample_sequences(
            self.model,
            inputs,
            config,
            num_samples=num_samples,
            seeds=None if greedy else seeds_per_observation(batch_size, observation_seeds, generator_seed),
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            prefill_once=self.prefill_once,
            synced_gpus=self.synced_gpus,
        )
        prompt_len = inputs["input_ids"].shape[1]
        return self.rollout_from_generated(inputs, sequences[:, prompt_len:], num_samples)

    def rollout_from_generated(
        self, inputs: Mapping[str, torch.Tensor], generated: torch.Tensor, num_samples: int
    ) -> Rollout:
        """The Rollout of the tokens ``generated`` ``[B*G, T']`` (observation-major) for ``encode_prompts``'
        ``inputs``: each row cut after its first stop token (kept), padded, decoded."""
        completion_ids, completion_mask = cut_at_stop(generated, self.stop_token_ids, self.pad_token_id)
        texts = self.decode_completions(completion_ids, completion_mask)
        batch_size = inputs["input_ids"].shape[0]
        obs_index = torch.arange(batch_size, device=completion_ids.device).repeat_interleave(num_samples)
        return Rollout.from_prompt_inputs(
            inputs, completion_ids, completion_mask, obs_index, texts, num_samples
        )

    def prefill(self, inputs: Mapping[str, torch.Tensor]):
        """The KV cache of each prompt but its last token, and the M-RoPE deltas ``[B, 1]``
        (:func:`agents.policies.generation.prefill`; the fast engine decodes from them)."""
        return prefill(self.model, inputs)

    def _generate_prefill_once(
        self, inputs: Mapping[str, torch.Tensor], repeats: int, generation_config, logits_processor=None
    ) -> torch.Tensor:
        """:func:`agents.policies.generation.generate_prefill_once` on this policy's model."""
        return generate_prefill_once(
            self.model, inputs, repeats, generation_config, logits_processor, self.synced_gpus
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
        ``with_entropy``: also each position's entropy [N, T] (0 where the mask is 0), from the same logits:
        ``(logprobs, entropies)``; differentiable when grad is enabled (GRPO's ``entropy_coef`` bonus;
        ``top_entropy_quantile`` only reads it).

        Per sequence, the full sequence is prompt (left-padded) + completion (right-padded) and
        ``mm_token_type_ids`` is extended with zeros. Either way the vocabulary projection runs only at the T
        positions that predict completion tokens, never over the prompt, and in chunks of tokens
        (``token_logprobs``), so no full [N, T, V] float32 logits tensor is built. Under
        ``self.autocast_dtype`` (e.g. torch.bfloat16, for GPUs) the forward runs in ``torch.autocast``.
        """
        return completion_logprobs(
            self.model if model is None else model,
            rollout_or_inputs,
            pad_token_id=self.pad_token_id,
            temperature=temperature,
            share_vision=share_vision,
            shared_prefix=self.shared_prefix if shared_prefix is None else shared_prefix,
            checkpoint_decoder=self.checkpoint_decoder,
            autocast_dtype=self.autocast_dtype,
            with_entropy=with_entropy,
        )
