"""Rollouts by vLLM, colocated on the training GPU (used only when ``vllm`` is installed: ``perception-r1[vllm]``).

NOT MEASURED: vLLM needs a GPU, which the machines this project is tested on lack. The adapter is written
against vLLM 0.33.0's source and tested against a fake of it (``tests/agents/fake_vllm.py``: the stop token
inside ``token_ids``, an encoder cache keyed by image hash, the KV-cache memory check, temperature <= 2, the
rendezvous port, sleep mode); it has not yet run against a real vLLM. It follows TRL 1.16's colocate mode:

* one ``vllm.LLM`` in this process (``distributed_executor_backend="external_launcher"``) on the model folder
  the policy was loaded from, on the policy's GPU (``LOCAL_RANK`` = its device index), taking
  ``gpu_memory_utilization`` of it; ``max_model_len`` = the prompt budget (image tokens at the policy's
  ``max_pixels`` + ``PROMPT_TEXT_TOKENS``) + ``max_new_tokens``, so that vLLM does not reserve the KV cache of
  one 32k/128k-token sequence; bfloat16 on CUDA; TRL's batch limits (``max_num_seqs`` = the answers of one
  call, ``max_num_batched_tokens`` 4,096); outside a ``torch.distributed`` run, a free rendezvous port;
* each answer is one request ``{"prompt": chat text with one <|image_pad|>, "multi_modal_data": {"image":
  PIL}}`` (vLLM's Qwen2-VL processor expands the placeholder; ``mm_processor_kwargs`` gives it the policy's
  min/max pixels, so that it sees the image as the training forward does) with its own seed, the answer's
  ``(seed, step, position, j)`` seed: reproducible, but vLLM's generator, so not the tokens of the other
  engines; the vision tokens get a logit bias of -100 (vLLM's bound) instead of -inf;
* the sampler's log-prob of each answer token comes back (``logprobs=0``, ``logprobs_mode="raw_logprobs"``:
  ``log_softmax(logits)``), as ``Rollout.sampling_logprobs`` where it is the trainer's quantity (temperature
  1, or greedy), for an importance-sampling correction; at another temperature vLLM cannot give it: None;
* after each update :meth:`VLLMEngine.load_weights` hands the policy's tensors to the vLLM model's
  ``load_weights`` (vLLM maps transformers' names) and resets vLLM's encoder cache (vision features are cached
  by image hash: a repeated image would otherwise be answered from the old weights' features) and prefix cache;
* sleep mode (on CUDA): after sampling vLLM sleeps (``sleep(level=1)``: weights to CPU, KV cache freed) through
  the backward pass; ``load_weights`` wakes the weights, ``generate`` the KV cache.

The Rollout's prompt tensors come from the policy's own processor: the training forward scores the answers
under the same inputs as the other engines.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.config import SetupError
from agents.policies.sampling import row_seeds, seeds_per_observation
from agents.rollout import Rollout, Sampling, with_sampling_logprobs

__all__ = ["VLLMEngine", "options_from_config", "prompt_budget"]

# vLLM clamps a logit bias to [-100, 100]
BANNED_LOGIT_BIAS = -100.0
# vLLM's SamplingParams refuses a temperature above this
MAX_TEMPERATURE = 2.0
# tokens of chat template and prompt text a request may have beside its image (a detection prompt listing the
# classes is the longest built-in one); more with max_prompt_tokens=
PROMPT_TEXT_TOKENS = 512
# TRL's colocate setting: vLLM's default (16,384) inflates its memory profiling and CUDA-graph capture
MAX_NUM_BATCHED_TOKENS = 4096
# completions a call holds at most when the run's B x G is not known (TrainConfig's defaults: 8 x 8)
DEFAULT_MAX_NUM_SEQS = 64


def options_from_config(config: Any) -> dict[str, Any]:
    """The engine's options a run's training options (a ``TrainConfig``) fix; {} without one."""
    if config is None:
        return {}
    return {
        "max_new_tokens": int(config.max_new_tokens),
        "temperature": float(config.temperature),
        "max_num_seqs": int(config.prompts_per_step) * int(config.group_size),
    }


def prompt_budget(policy: Any, text_tokens: int = PROMPT_TEXT_TOKENS) -> int:
    """The longest prompt the policy makes: one image at its ``max_pixels`` (one token per
    ``(patch * merge)^2`` pixels, plus the vision start/end tokens) and ``text_tokens`` of text."""
    processor = policy.processor.image_processor
    pixels_per_token = (int(processor.patch_size) * int(processor.merge_size)) ** 2
    return policy.pixel_bounds[1] // pixels_per_token + text_tokens


def check_temperature(temperature: float) -> None:
    """vLLM's limit on temperature, said in our terms before vLLM raises in the middle of a run."""
    if temperature > MAX_TEMPERATURE:
        raise SetupError(
            f"--rollout-engine vllm samples at temperature <= {MAX_TEMPERATURE:g} (vLLM's limit); got "
            f"{temperature:g}: lower --temperature, or use --rollout-engine fast"
        )


class VLLMEngine:
    """A :class:`~agents.rollout.RolloutEngine` on a colocated ``vllm.LLM`` with its own copy of the weights."""

    name = "vllm"
    shares_weights = False

    def __init__(
        self,
        policy: Any,
        *,
        llm: Any = None,
        gpu_memory_utilization: float = 0.3,
        max_new_tokens: int = 768,
        max_prompt_tokens: int | None = None,
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        temperature: float = 1.0,
        dtype: str = "auto",
        sleep_mode: bool | None = None,
        sleep_level: int = 1,
        **llm_options: Any,
    ):
        """``llm``: an existing ``vllm.LLM`` (else one is built on the policy's model folder).
        ``max_new_tokens`` and ``max_prompt_tokens`` (default: :func:`prompt_budget`) size vLLM's
        ``max_model_len``; ``max_num_seqs``: answers per call (the run's B x G); ``temperature``: the run's,
        checked now. ``dtype``: vLLM's weights and compute ("auto": bfloat16 on CUDA, else the policy's).
        ``sleep_mode`` (None: on CUDA): vLLM sleeps at ``sleep_level`` (1: weights kept on CPU; 2: dropped,
        sent again before sampling) between sampling and the next weights. ``llm_options`` go to ``vllm.LLM``.
        """
        try:
            import vllm
        except ImportError as error:
            raise SetupError(
                "--rollout-engine vllm needs the vllm package (pip install 'perception-r1[vllm]', on a CUDA "
                f"machine); it is not importable here ({error}). Use --rollout-engine fast"
            ) from error
        from agents.lora import is_lora

        if is_lora(policy.model):
            raise SetupError(
                "--rollout-engine vllm does not take LoRA adapters yet: use --rollout-engine fast"
            )
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level!r}")
        check_temperature(temperature)
        self.policy = policy
        self._vllm = vllm
        on_cuda = policy.device.type == "cuda"
        self.sleep_mode = on_cuda if sleep_mode is None else bool(sleep_mode)
        self.sleep_level = sleep_level
        budget = (max_prompt_tokens or prompt_budget(policy)) + max_new_tokens
        longest = getattr(policy.model.config.get_text_config(), "max_position_embeddings", None)
        self.max_model_len = min(budget, longest or budget)  # vLLM refuses more than the model's maximum
        self._sleeping: set[str] = set()  # vLLM's memory tags asleep now ("weights", "kv_cache")
        self._weights_dropped = False  # level-2 sleep dropped them: send the policy's before sampling
        if llm is None:
            settings = self._settings(gpu_memory_utilization, max_num_seqs, dtype)
            llm = vllm.LLM(**{**settings, **llm_options})
        self.llm = llm
        self.load_weights(policy.model.state_dict())  # the policy may have moved on from its folder

    # ----------------------------------------------------------------------------------------- start-up

    def _settings(self, gpu_memory_utilization: float, max_num_seqs: int, dtype: str) -> dict[str, Any]:
        """``vllm.LLM``'s arguments, TRL's colocate mode's with this run's sizes; the launcher's variables."""
        model = self.policy.model
        source = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", "")
        if not source:
            raise SetupError("--rollout-engine vllm builds vLLM from the policy's model folder; it has none")
        device = self.policy.device
        if dtype == "auto":
            dtype = "bfloat16" if device.type == "cuda" else str(model.dtype).removeprefix("torch.")
        _set_launcher_variables(device)
        min_pixels, max_pixels = self.policy.pixel_bounds
        return dict(
            model=str(source),
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=self.max_model_len,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max(MAX_NUM_BATCHED_TOKENS, max_num_seqs),
            enable_sleep_mode=self.sleep_mode,
            distributed_executor_backend="external_launcher",
            logprobs_mode="raw_logprobs",
            mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels},
            limit_mm_per_prompt={"image": 1},
            seed=0,
        )

    # ----------------------------------------------------------------------------------------- sampling

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
        if not sampling.greedy:
            check_temperature(sampling.temperature)
        policy = self.policy
        inputs = policy.encode_prompts(observations)
        self._check_length(inputs["attention_mask"], sampling.max_new_tokens)
        group = 1 if sampling.greedy else num_samples
        seeds = row_seeds(seeds_per_observation(len(observations), observation_seeds), group)
        # vLLM's raw log-probs are log_softmax(logits): the trainer's at temperature 1 (greedy: scored so too)
        logprobs = sampling.greedy or sampling.temperature == 1.0
        requests, params = [], []
        for b, observation in enumerate(observations):
            request = {
                "prompt": policy.chat_text(str(observation["prompt"])),
                "multi_modal_data": {"image": to_pil_image(observation["image"])},
            }
            for j in range(group):
                requests.append(request)
                params.append(self._sampling_params(sampling, seeds[b * group + j], logprobs))
        self._wake()
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        self._sleep()
        completions = [output.outputs[0] for output in outputs]
        device = inputs["input_ids"].device
        # vLLM 0.33 ends a stopped answer's token_ids with its stop token (check_stop appends it first)
        rows = [[int(t) for t in c.token_ids] for c in completions]
        generated = _right_padded(rows, policy.pad_token_id, device)
        rollout = policy.rollout_from_generated(
            inputs, generated.repeat_interleave(num_samples // group, 0), num_samples
        )
        sampled = _token_logprobs(completions, device) if logprobs else None
        return with_sampling_logprobs(rollout, sampled, repeats=num_samples // group)

    def _check_length(self, prompt_mask: torch.Tensor, max_new_tokens: int) -> None:
        """vLLM refuses a request longer than ``max_model_len``: say which setting to raise first."""
        longest = int(prompt_mask.sum(1).max())
        if longest + max_new_tokens > self.max_model_len:
            raise SetupError(
                f"--rollout-engine vllm: a prompt of {longest} tokens + {max_new_tokens} new tokens > "
                f"max_model_len {self.max_model_len} (the prompt budget + max_new_tokens); pass a larger "
                "max_prompt_tokens to the engine, or lower --max-pixels"
            )

    def _sampling_params(self, sampling: Sampling, seed: int, logprobs: bool):
        policy = self.policy
        return self._vllm.SamplingParams(
            n=1,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0: off (vLLM's preferred spelling; -1 is accepted too)
            max_tokens=sampling.max_new_tokens,
            seed=None if sampling.greedy else seed,
            stop_token_ids=list(policy.stop_token_ids),
            logit_bias={int(t): BANNED_LOGIT_BIAS for t in policy.vision_token_ids},
            logprobs=0 if logprobs else None,  # the sampled token's alone
            skip_special_tokens=False,
        )

    # ---------------------------------------------------------------------------------- weights, memory

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Hand the weights (names as ``policy.model.state_dict()``) to vLLM's model; drop what vLLM cached
        with the old ones: the vision encoder's outputs (keyed by image hash) and the prefix cache."""
        if "weights" in self._sleeping:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # room for the weights (as TRL does)
            self.llm.wake_up(tags=["weights"])
            self._sleeping.discard("weights")
        model = _in_process_model(self.llm)
        model.load_weights((name, tensor.detach()) for name, tensor in state_dict.items())
        self._weights_dropped = False
        self.llm.llm_engine.reset_encoder_cache()  # vLLM 0.33: on the engine, not on LLM
        self.llm.reset_prefix_cache()

    def _wake(self) -> None:
        """Before sampling: vLLM's memory back (after a level-2 sleep, the policy's weights sent again)."""
        if self._weights_dropped:
            self.load_weights(self.policy.model.state_dict())
        if self._sleeping:
            self.llm.wake_up(tags=sorted(self._sleeping))
            self._sleeping.clear()

    def _sleep(self) -> None:
        """After sampling: vLLM's memory released for the update (weights to CPU or dropped; KV cache freed)."""
        if self.sleep_mode:
            self.llm.sleep(level=self.sleep_level)
            self._sleeping = {"weights", "kv_cache"}
            self._weights_dropped = self.sleep_level == 2

    def describe(self) -> str:
        return f"vllm {getattr(self._vllm, '__version__', '?')} (colocated; not measured here)"


def _set_launcher_variables(device: torch.device) -> None:
    """torchrun's variables, which vLLM's external launcher reads: vLLM on the policy's GPU; outside a
    ``torch.distributed`` run a rank of one and a free rendezvous port (a fixed one collides with a second run
    on the node); in one, the launcher's."""
    import torch.distributed as dist

    if device.type == "cuda":
        os.environ["LOCAL_RANK"] = str(
            device.index if device.index is not None else torch.cuda.current_device()
        )
    else:
        os.environ.setdefault("LOCAL_RANK", "0")
    if dist.is_available() and dist.is_initialized():
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if os.environ.get("MASTER_PORT", "").strip().lower() in ("", "0", "auto"):
        os.environ["MASTER_PORT"] = str(_free_port(os.environ["MASTER_ADDR"]))


def _free_port(address: str) -> int:
    """A TCP port nothing listens on now (the system's choice)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _token_logprobs(completions: Sequence[Any], device: torch.device) -> torch.Tensor:
    """``[N, longest]`` the log-prob vLLM reported for each answer token (``{token_id: Logprob}`` per token)."""
    rows = [
        [float(position[int(token)].logprob) for token, position in zip(c.token_ids, c.logprobs or ())]
        for c in completions
    ]
    width = max(1, max((len(r) for r in rows), default=0))
    out = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
    return out.to(device)


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
