"""The fast rollout engine: each prompt prefilled once, then G answers decoded on a static KV cache.

transformers' ``generate`` spends most of a small batch's decode step in Python and kernel launches: per
token it rebuilds masks and positions, runs the logits processors and stopping criteria, and grows a
``DynamicCache`` by concatenation. Here a decode step is one call of the language model on fixed buffers:

* **Cache** (:class:`GroupKV`): per layer one buffer ``[B, kv_heads, S + T*G, head_dim]``: the prompt's keys
  and values once per observation in the first ``S >= P - 1`` slots (``P - 1`` prefilled tokens, the rest
  masked), then slot ``S + k*G + g`` for answer ``g``'s ``k``-th fed token. The prefix is not repeated G times.
* **Step**: the ``G`` answers of observation ``b`` are one row of ``G`` queries: the decoder runs on ``[B, G]``
  tokens; query ``g`` sees the real prompt keys and its own earlier slots (mask ``[B, 1, G, S + T*G]``).
  Token ``k`` of every answer sits at M-RoPE position ``p_b - 1 + k + delta[b]`` on all three axes (``p_b``
  real prompt tokens), where ``generate`` puts it.
* **Sampling**: the vision tokens suppressed, then :class:`~agents.policies.sampling.PerRowGumbelSampler`
  (each answer's own seeded stream) or argmax: the same tokens as ``QwenVLPolicy.generate`` for the same seeds,
  up to float reordering in the attention (``tests/agents/test_engines.py`` checks equality in float32).
* **CUDA**: the step's inputs live in fixed buffers, so the step is captured once as a CUDA graph and replayed
  (``torch.cuda.graphs``); the buffers (and the graph) are kept for the next call of the same shapes, the prefix
  capacity ``S`` rounded up so that prompts of similar length share them. Sampling runs outside the graph.
  Without CUDA (or with ``cuda_graphs=False``) the same loop runs eagerly, attending to the filled slots only.
* **Early exit** once every answer has stopped (under FSDP2, ``synced_gpus``: once every rank's have).
* **Log-probs**: each sampled token's ``log softmax(logits / temperature)`` (one ``log_softmax`` a step) comes
  back as ``Rollout.sampling_logprobs``; under the same weights it equals the trainer's ``completion_logprobs``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agents.config import SetupError
from agents.policies.sampling import PerRowGumbelSampler, row_seeds, seeds_per_observation
from agents.rollout import Rollout, Sampling, with_sampling_logprobs

__all__ = ["FastEngine", "GroupKV", "unsupported_reason"]

# the prefix capacity of a static-shape decode is a multiple of this (prompts of similar length share graphs)
PREFIX_BUCKET = 64
# with CUDA graphs, look for "every answer stopped" every this many steps (each look waits for the GPU)
STOP_CHECK_EVERY = 4


class GroupKV:
    """A static KV cache of ``B`` observations x ``G`` answers; duck-types ``Cache.update`` for the decoder.

    ``keys[l]``, ``values[l]``: ``[B, kv_heads, prefix + steps * G, head_dim]``. Each decode step writes the G
    new keys of every observation at ``write_index`` (``[G]``, slots ``prefix + k*G + g``) and attends to the
    first ``visible`` slots (all of them in static-shape mode).
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], prefix: int, group_size: int):
        self.keys, self.values = keys, values
        self.prefix, self.group_size = prefix, group_size
        self.length = int(keys[0].shape[2])
        device = keys[0].device
        self.write_index = torch.arange(prefix, prefix + group_size, device=device)  # [G]
        self.visible = self.length

    @classmethod
    def empty(cls, like: torch.Tensor, layers: int, prefix: int, steps: int, group_size: int) -> GroupKV:
        """Zeroed buffers shaped after one layer's prompt keys ``like`` ``[B, kv_heads, *, head_dim]``."""
        batch, heads, _, dim = like.shape
        shape = (batch, heads, prefix + steps * group_size, dim)
        new = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(2 * layers)]
        return cls(new[:layers], new[layers:], prefix, group_size)

    def load_prefix(self, prompt_cache) -> None:
        """Copy the prefilled prompt keys/values (a ``DynamicCache`` of B rows, ``P - 1`` tokens) in front."""
        for layer, (keys, values) in enumerate(zip(self.keys, self.values)):
            source = prompt_cache.layers[layer]
            length = source.keys.shape[2]
            keys[:, :, :length].copy_(source.keys)
            values[:, :, :length].copy_(source.values)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        """Store the step's ``[B, kv_heads, G, head_dim]`` keys/values; return the visible cache."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys.index_copy_(2, self.write_index, key_states)
        values.index_copy_(2, self.write_index, value_states)
        if self.visible == self.length:
            return keys, values
        return keys[:, :, : self.visible], values[:, :, : self.visible]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.visible


@dataclass
class _DecodeBuffers:
    """Everything a decode step reads or writes, at fixed addresses (what a CUDA graph replays on)."""

    cache: GroupKV
    tokens: torch.Tensor  # [B, G] long: the token each answer feeds at this step
    positions: torch.Tensor  # [3, B, G] long: its M-RoPE position (the same on the three axes: text)
    mask: torch.Tensor  # [B, 1, G, K] bool (sdpa) or float 0 / -inf-like (eager): which keys a query sees
    allowed: Any  # the mask's value that lets a query see a key (True, or 0.0)
    key: tuple  # shapes, dtype, device and weights these buffers (and their graph) were made for
    graph: Any = None  # a _GraphedStep once captured

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.tokens.shape[0]), int(self.tokens.shape[1])


class _GraphedStep:
    """A decode step captured once as a CUDA graph; ``__call__`` replays it and returns its output buffer."""

    def __init__(self, step: Callable[[], torch.Tensor], warmup: int = 2):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # lazy initialisations (cuBLAS workspaces, kernels) before capture
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = step()

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.output


def attention_implementation(model: torch.nn.Module) -> str:
    """The text model's attention implementation (transformers' ``_attn_implementation``; eager if unset)."""
    return getattr(model.config.get_text_config(), "_attn_implementation", None) or "eager"


def unsupported_reason(policy: Any) -> str | None:
    """Why :class:`FastEngine` cannot decode ``policy``'s model, or None if it can."""
    for need in ("encode_prompts", "prefill", "rollout_from_generated"):
        if not hasattr(policy, need):
            return f"it decodes a QwenVLPolicy; {type(policy).__name__} has no {need}()"
    implementation = attention_implementation(policy.model)
    if implementation not in ("eager", "sdpa"):
        return (
            f"it needs the sdpa or eager attention (it passes its own mask), the model uses {implementation!r} "
            "(load it with attn_implementation='sdpa')"
        )
    if getattr(policy.model.config.get_text_config(), "use_sliding_window", False):
        return "it does not support sliding-window attention"
    return None


class FastEngine:
    """Rollouts of a :class:`~agents.policies.qwen_vl.QwenVLPolicy` by a static-cache decode loop.

    Shares the policy's model (``load_weights`` has nothing to do). ``cuda_graphs``: capture the decode step
    (only ever on CUDA; "auto": outside FSDP2). ``static_shapes``: fixed-size buffers and full-length attention
    every step (what graphs need; default: as ``cuda_graphs``); False attends to the filled slots only.
    """

    name = "fast"
    shares_weights = True

    def __init__(self, policy: Any, *, cuda_graphs: bool | str = "auto", static_shapes: bool | None = None):
        problem = unsupported_reason(policy)
        if problem:
            raise SetupError(f"--rollout-engine fast: {problem}; use --rollout-engine transformers")
        if cuda_graphs not in (True, False, "auto"):
            raise ValueError(f"cuda_graphs must be True, False or 'auto', got {cuda_graphs!r}")
        self.policy = policy
        self.cuda_graphs = cuda_graphs
        self.static_shapes = static_shapes
        self._buffers: _DecodeBuffers | None = None  # kept for the next call of the same shapes

    # -------------------------------------------------------------------------------------------- interface

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Nothing to do: the engine decodes with the training model's own tensors."""

    def generate(
        self,
        observations: Sequence[Mapping[str, Any]],
        num_samples: int,
        sampling: Sampling,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        policy, model = self.policy, self.policy.model
        inputs = policy.encode_prompts(observations)
        batch_size = inputs["input_ids"].shape[0]
        group = 1 if sampling.greedy else num_samples  # G identical greedy answers: decode one, repeat
        if sampling.greedy:
            choose = _argmax
        else:
            seeds = seeds_per_observation(batch_size, observation_seeds)
            sampler = PerRowGumbelSampler(
                row_seeds(seeds, group),
                sampling.temperature,
                sampling.top_k,
                sampling.top_p,
                device=self.device,
            )
            choose = sampler.choose
        # the answers' log-probs are scored as the trainer scores them: at the sampling temperature (greedy: 1)
        temperature = 1.0 if sampling.greedy else sampling.temperature
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                generated, logprobs = self._decode(
                    inputs, group, sampling.max_new_tokens, choose, temperature
                )
        finally:
            model.train(was_training)
        repeats = num_samples // group
        rollout = policy.rollout_from_generated(
            inputs, generated.repeat_interleave(repeats, dim=0), num_samples
        )
        return with_sampling_logprobs(rollout, logprobs, repeats=repeats)

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def uses_cuda_graphs(self) -> bool:
        """Whether the decode step is replayed as a CUDA graph: only ever on CUDA (the model may move)."""
        if self.device.type != "cuda":
            return False
        if self.cuda_graphs == "auto":
            return not getattr(self.policy, "synced_gpus", False)
        return bool(self.cuda_graphs)

    def describe(self) -> str:
        """One line: how this engine decodes here (for logs and the benchmark)."""
        if self.uses_cuda_graphs():
            return "fast (static KV cache, CUDA graph of the decode step)"
        shapes = "static shapes" if self._static_shapes() else "attends to filled slots"
        return f"fast (static KV cache, eager, {shapes})"

    # ------------------------------------------------------------------------------------------- decoding

    def _static_shapes(self) -> bool:
        return self.uses_cuda_graphs() if self.static_shapes is None else bool(self.static_shapes)

    def _decode(
        self, inputs: Mapping[str, torch.Tensor], group: int, steps: int, choose: Callable, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B*G, T']`` sampled tokens, ``T' <= steps``, observation-major, pad after a row's stop token; and
        ``[B*G, T']`` their log-probs under ``softmax(logits / temperature)`` (before the vision tokens are
        suppressed and top-k/top-p filter: the distribution the trainer's ``completion_logprobs`` scores)."""
        policy = self.policy
        prompt_cache, rope_deltas = policy.prefill(inputs)
        # [B]: the last prompt token's position (the deltas count real tokens, not left padding)
        last_position = inputs["attention_mask"].sum(1) - 1 + rope_deltas.view(-1)
        buffers = self._buffers_for(prompt_cache, inputs["attention_mask"], group, steps)
        graphs = self.uses_cuda_graphs()
        step = self._graphed(buffers) if graphs else (lambda: self._forward(buffers))
        device = buffers.tokens.device
        batch, _ = buffers.shape
        rows = batch * group
        suppressed = torch.tensor(policy.vision_token_ids, device=device)
        stops = torch.tensor(policy.stop_token_ids, device=device)
        out = torch.full((rows, steps), policy.pad_token_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((rows, steps), dtype=torch.float32, device=device)
        unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        tokens = inputs["input_ids"][:, -1:].expand(batch, group)
        check_every = STOP_CHECK_EVERY if graphs else 1
        done = steps
        for k in range(steps):
            self._begin_step(buffers, k, tokens, last_position)
            logits = step()  # [N, V] float32
            # [N, V], before the suppression below (log_softmax: half logsumexp's time on CPU)
            scored = torch.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)
            logits.index_fill_(1, suppressed, float("-inf"))  # vision tokens are never sampled
            chosen = torch.where(unfinished, choose(logits), policy.pad_token_id)
            out[:, k] = chosen
            logprobs[:, k] = scored.gather(1, chosen.view(-1, 1)).view(-1)
            unfinished &= ~torch.isin(chosen, stops)
            if k + 1 < steps and (k + 1) % check_every == 0 and not self._any_unfinished(unfinished):
                done = k + 1
                break
            tokens = chosen.view(batch, group)
        return out[:, :done], logprobs[:, :done]

    def _any_unfinished(self, unfinished: torch.Tensor) -> bool:
        """Whether an answer (under FSDP2: of any rank) is still being written; every rank steps in lockstep."""
        if not getattr(self.policy, "synced_gpus", False):
            return bool(unfinished.any())
        import torch.distributed as dist

        flag = unfinished.any().to(torch.int32).view(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _buffers_for(self, prompt_cache, prompt_mask: torch.Tensor, group: int, steps: int) -> _DecodeBuffers:
        """Buffers of this decode, filled with the prompt; reused (with their graph) when the shapes match."""
        model = self.policy.model
        first = prompt_cache.layers[0].keys  # [B, kv_heads, P - 1, head_dim]
        batch, prefilled = int(first.shape[0]), int(first.shape[2])
        static = self._static_shapes()
        prefix = -(-prefilled // PREFIX_BUCKET) * PREFIX_BUCKET if static else prefilled
        # inference-mode tensors refuse in-place writes outside inference mode: such buffers serve only it
        inference = torch.is_inference_mode_enabled()
        key = (batch, group, prefix, steps, first.dtype, first.device, inference, _weights_fingerprint(model))
        buffers = self._buffers
        if buffers is None or buffers.key != key or not static:
            layers = len(prompt_cache.layers)
            cache = GroupKV.empty(first, layers, prefix, steps, group)
            eager_attention = attention_implementation(model) == "eager"
            allowed = 0.0 if eager_attention else True
            mask_dtype = first.dtype if eager_attention else torch.bool
            blocked = torch.finfo(first.dtype).min if eager_attention else False
            buffers = _DecodeBuffers(
                cache=cache,
                tokens=torch.zeros((batch, group), dtype=torch.long, device=first.device),
                positions=torch.zeros((3, batch, group), dtype=torch.long, device=first.device),
                mask=torch.full(
                    (batch, 1, group, cache.length), blocked, dtype=mask_dtype, device=first.device
                ),
                allowed=allowed,
                key=key,
            )
            self._buffers = buffers if static else None
        self._load_prompt(buffers, prompt_cache, prompt_mask[:, :prefilled])
        return buffers

    @staticmethod
    def _load_prompt(buffers: _DecodeBuffers, prompt_cache, prefix_mask: torch.Tensor) -> None:
        """The prompt's keys/values in front; the mask: real prompt tokens visible, every answer slot hidden."""
        buffers.cache.load_prefix(prompt_cache)
        mask = buffers.mask
        blocked = False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min
        mask.fill_(blocked)
        length = prefix_mask.shape[1]
        visible = prefix_mask.bool()[:, None, None, :].expand(-1, 1, mask.shape[2], -1)  # [B, 1, G, P-1]
        mask[..., :length].masked_fill_(visible, buffers.allowed)

    def _begin_step(self, buffers: _DecodeBuffers, k: int, tokens: torch.Tensor, last_position) -> None:
        """Step ``k``'s inputs into the buffers: its tokens, positions, write slots, and each answer's new key."""
        cache = buffers.cache
        batch, group = buffers.shape
        first_slot = cache.prefix + k * group
        slots = torch.arange(first_slot, first_slot + group, device=cache.write_index.device)
        cache.write_index.copy_(slots)
        buffers.tokens.copy_(tokens)
        buffers.positions.copy_((last_position + k).view(1, batch, 1).expand(3, batch, group))
        answers = torch.arange(group, device=slots.device)
        buffers.mask[:, 0, answers, slots] = buffers.allowed  # answer g now also sees its k-th token
        cache.visible = cache.length if self._static_shapes() else first_slot + group

    def _forward(self, buffers: _DecodeBuffers) -> torch.Tensor:
        """One decode step on the buffers: logits ``[B*G, V]`` (float32) of every answer's next token."""
        model = self.policy.model
        language_model = model.model.language_model
        cache = buffers.cache
        mask = buffers.mask if cache.visible == cache.length else buffers.mask[..., : cache.visible]
        layer_types = set(getattr(model.config.get_text_config(), "layer_types", None) or ["full_attention"])
        hidden = language_model(
            inputs_embeds=language_model.embed_tokens(buffers.tokens),
            attention_mask={layer_type: mask for layer_type in layer_types},
            position_ids=buffers.positions,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state  # [B, G, H]
        logits = model.lm_head(hidden)  # [B, G, V]
        return logits.reshape(-1, logits.shape[-1]).float()

    def _graphed(self, buffers: _DecodeBuffers) -> Callable[[], torch.Tensor]:
        """The buffers' captured step (captured now if new); eager, with a warning, if capture fails."""
        if buffers.graph is None:
            try:
                buffers.graph = _GraphedStep(lambda: self._forward(buffers))
            except RuntimeError as error:  # a model whose step cannot be captured: decode eagerly
                warnings.warn(
                    f"rollout engine fast: CUDA graph capture failed ({error}); decoding without graphs",
                    stacklevel=3,
                )
                self.cuda_graphs = False
                self._buffers = None
                return lambda: self._forward(buffers)
        return buffers.graph


def _argmax(scores: torch.Tensor) -> torch.Tensor:
    return scores.argmax(dim=-1)


def _weights_fingerprint(model: torch.nn.Module) -> int:
    """Changes when a parameter is given new storage (a graph replays on the old addresses)."""
    return hash(tuple(p.data_ptr() for p in model.parameters()))
