"""Rollouts by vLLM, colocated on the training GPU (used only when ``vllm`` is installed).

NOT MEASURED: vLLM cannot be installed on the CPU machines this project is tested on; this adapter is
tested against a fake ``vllm`` module (``tests/agents/test_engines.py``) and has not yet run against a real
one. It follows TRL's colocate mode (``vllm_mode="colocate"``):

* one ``vllm.LLM`` in this process (``distributed_executor_backend="external_launcher"``) on the model folder
  the policy was loaded from, taking ``gpu_memory_utilization`` of the GPU next to the training model;
* each answer is one request ``{"prompt": chat text with one <|image_pad|>, "multi_modal_data": {"image":
  PIL}}`` (vLLM's Qwen2-VL processor expands the placeholder; ``mm_processor_kwargs`` gives it the policy's
  min/max pixels, so that it sees the image as the training forward does) with its own seed, the answer's
  ``(seed, step, position, j)`` seed: reproducible, but vLLM's generator, so not the tokens of the other
  engines; the vision tokens get a logit bias of -100 (vLLM's bound) instead of -inf;
* after each update :meth:`VLLMEngine.load_weights` hands the policy's tensors to the vLLM model's
  ``load_weights`` (vLLM maps transformers' names) and resets vLLM's prefix cache.

The Rollout's prompt tensors come from the policy's own processor: the training forward scores the answers
under the same inputs as the other engines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.config import SetupError
from agents.policies.sampling import row_seeds, seeds_per_observation
from agents.rollout import Rollout, Sampling

__all__ = ["VLLMEngine"]

# vLLM clamps a logit bias to [-100, 100]
BANNED_LOGIT_BIAS = -100.0


class VLLMEngine:
    """A :class:`~agents.rollout.RolloutEngine` on a colocated ``vllm.LLM`` with its own copy of the weights."""

    name = "vllm"
    shares_weights = False

    def __init__(self, policy: Any, *, gpu_memory_utilization: float = 0.3, llm: Any = None, **llm_options):
        """``llm``: an existing ``vllm.LLM`` (else one is built on the policy's model folder); ``llm_options``
        go to ``vllm.LLM``."""
        try:
            import vllm
        except ImportError as error:
            raise SetupError(
                "--rollout-engine vllm needs the vllm package (pip install vllm, on a CUDA machine); it is "
                f"not importable here ({error}). Use --rollout-engine fast"
            ) from error
        from agents.lora import is_lora

        if is_lora(policy.model):
            raise SetupError(
                "--rollout-engine vllm does not take LoRA adapters yet: use --rollout-engine fast"
            )
        self.policy = policy
        self._vllm = vllm
        self.llm = llm if llm is not None else self._build_llm(gpu_memory_utilization, llm_options)
        self.load_weights(policy.model.state_dict())  # the policy may have moved on from its folder

    def _build_llm(self, gpu_memory_utilization: float, options: dict[str, Any]):
        model = self.policy.model
        source = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", "")
        if not source:
            raise SetupError("--rollout-engine vllm builds vLLM from the policy's model folder; it has none")
        min_pixels, max_pixels = self.policy.pixel_bounds
        for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(name, value)  # external_launcher reads torchrun's variables
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        settings = dict(
            model=str(source),
            dtype=str(model.dtype).removeprefix("torch."),
            gpu_memory_utilization=gpu_memory_utilization,
            distributed_executor_backend="external_launcher",
            mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels},
            limit_mm_per_prompt={"image": 1},
            seed=0,
        )
        return self._vllm.LLM(**{**settings, **options})

    def generate(
        self,
        observations: Sequence[Mapping[str, Any]],
        num_samples: int,
        sampling: Sampling,
        observation_seeds: Sequence[int] | None = None,
    ) -> Rollout:
        from agents.policies.qwen_vl import to_pil_image

        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        policy = self.policy
        group = 1 if sampling.greedy else num_samples
        seeds = row_seeds(seeds_per_observation(len(observations), observation_seeds), group)
        requests, params = [], []
        for b, observation in enumerate(observations):
            request = {
                "prompt": policy.chat_text(str(observation["prompt"])),
                "multi_modal_data": {"image": to_pil_image(observation["image"])},
            }
            for j in range(group):
                requests.append(request)
                params.append(self._sampling_params(sampling, seeds[b * group + j]))
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        rows = [self._answer_ids(output.outputs[0]) for output in outputs]
        inputs = policy.encode_prompts(observations)
        generated = _right_padded(rows, policy.pad_token_id, inputs["input_ids"].device)
        if group != num_samples:
            generated = generated.repeat_interleave(num_samples, dim=0)
        return policy.rollout_from_generated(inputs, generated, num_samples)

    def _sampling_params(self, sampling: Sampling, seed: int):
        policy = self.policy
        return self._vllm.SamplingParams(
            n=1,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_new_tokens,
            seed=None if sampling.greedy else seed,
            stop_token_ids=list(policy.stop_token_ids),
            logit_bias={int(t): BANNED_LOGIT_BIAS for t in policy.vision_token_ids},
            skip_special_tokens=False,
        )

    def _answer_ids(self, completion) -> list[int]:
        """The answer's tokens with its stop token (vLLM may leave a stop token out of ``token_ids``)."""
        ids = [int(t) for t in completion.token_ids]
        stops = self.policy.stop_token_ids
        if completion.finish_reason == "stop" and (not ids or ids[-1] not in stops):
            reason = completion.stop_reason
            ids.append(int(reason) if isinstance(reason, int) else stops[0])
        return ids

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Hand the weights (names as ``policy.model.state_dict()``) to vLLM's model; drop its prefix cache."""
        model = _in_process_model(self.llm)
        model.load_weights((name, tensor.detach()) for name, tensor in state_dict.items())
        self.llm.reset_prefix_cache()

    def describe(self) -> str:
        return f"vllm {getattr(self._vllm, '__version__', '?')} (colocated; not measured here)"


def _in_process_model(llm) -> Any:
    """The ``torch.nn.Module`` a colocated ``vllm.LLM`` runs (its worker's model runner's model)."""
    worker = llm.llm_engine.model_executor.driver_worker
    for holder in (getattr(worker, "worker", None), worker):  # WorkerWrapperBase.worker, or the worker itself
        model = getattr(getattr(holder, "model_runner", None), "model", None)
        if model is not None:
            return model
    raise SetupError(
        "--rollout-engine vllm: this vLLM keeps its model out of reach of this process "
        "(llm.llm_engine.model_executor.driver_worker[.worker].model_runner.model); set "
        "VLLM_ENABLE_V1_MULTIPROCESSING=0"
    )


def _right_padded(rows: list[list[int]], pad_token_id: int, device: torch.device) -> torch.Tensor:
    """``[len(rows), longest]`` long tensor of the rows, right-padded with ``pad_token_id``."""
    width = max(1, max((len(r) for r in rows), default=0))
    out = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(device)
