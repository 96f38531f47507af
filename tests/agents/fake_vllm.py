"""A stand-in for vLLM 0.33.0's offline ``vllm.LLM``, as a colocated trainer drives it.

vLLM needs a GPU and is not installed here, so ``agents/engines/vllm_engine.py`` is tested against this module.
It copies what vLLM 0.33.0 does (read from its source: ``vllm/entrypoints/llm.py``, ``sampling_params.py``,
``v1/core/kv_cache_planning.py``, ``v1/core/sched/utils.py``, ``v1/executor/uniproc_executor.py``,
``v1/worker/gpu_worker.py``) wherever an adapter can go wrong, and records the rest:

* **start**: ``distributed_executor_backend="external_launcher"`` reads ``RANK``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``; outside a ``torch.distributed`` run it opens that rendezvous port (taken:
  errno 98, "Address already in use"). ``dtype="auto"`` is the checkpoint's dtype, float16 for a float32 one.
  The KV cache of one ``max_model_len`` sequence (default: the model's ``max_position_embeddings``) must fit
  in ``gpu_memory_utilization`` of the device beside the weights, else vLLM's ValueError. A
  ``max_model_len`` above the model's maximum is refused; ``max_num_batched_tokens >= max_num_seqs``.
* **SamplingParams**: temperature in [0, 2], top-p in (0, 1], top-k >= -1, max_tokens >= 1.
* **generate**: a prompt longer than ``max_model_len - 1`` is refused; each answer's ``token_ids`` end with
  the stop token when it stopped (``finish_reason="stop"``, ``stop_reason`` the id); ``logprobs=k`` gives one
  ``{token_id: Logprob}`` per answer token (here ``RAW_LOGPROB(i)`` for the i-th token). A sleeping engine
  cannot generate.
* **encoder cache**: vision features are cached by image hash and served to later requests with the same
  image, even after new weights are loaded, until ``llm.llm_engine.reset_encoder_cache()`` (``LLM`` itself
  has no such method in 0.33). :attr:`FakeLLM.served` records, per request, the weights version its features
  were computed with and the version loaded then.
* **sleep mode**: ``sleep(level)`` / ``wake_up(tags)`` (only with ``enable_sleep_mode=True``); loading
  weights that sleep writes to unmapped memory, which the fake refuses.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def RAW_LOGPROB(i: int) -> float:
    """The log-prob the fake reports for an answer's i-th token (0-based): distinct, negative, exact in float32."""
    return -0.25 * (i + 1)


class VLLMValidationError(ValueError):
    """vLLM's error for bad request parameters (a ValueError)."""


@dataclass
class Logprob:
    """``vllm.logprobs.Logprob``."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    """``vllm.SamplingParams``: keeps what it is given; validates as 0.33's ``_verify_args`` does."""

    def __init__(self, **settings):
        self.__dict__.update(
            dict(n=1, temperature=1.0, top_p=1.0, top_k=0, max_tokens=16, seed=None, logprobs=None)
        )
        self.__dict__.update(settings)
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise VLLMValidationError(
                f"temperature must be a finite non-negative number, got {self.temperature}."
            )
        if self.temperature > 2.0:
            raise VLLMValidationError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise VLLMValidationError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.top_k < -1:
            raise VLLMValidationError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise VLLMValidationError(f"max_tokens must be at least 1, got {self.max_tokens}.")


class FakeLLM:
    """``vllm.LLM``. Class attributes a test sets: ``device_memory`` (bytes), ``answer`` (the answer's tokens
    before its stop token), ``stops`` (whether answers stop, else they run to ``max_tokens``: "length"),
    ``count_prompt_tokens`` (request -> prompt length after the image placeholder is expanded)."""

    device_memory = 80 * GIB
    answer: tuple[int, ...] = ()
    stops = True
    count_prompt_tokens = staticmethod(lambda request: 1)

    def __init__(self, model: str, **settings):
        self.settings = {"model": model, **settings}
        config = json.loads((Path(model) / "config.json").read_text())
        text = config.get("text_config", config)
        self._generation_eos = _generation_eos(Path(model))
        self.dtype = self._dtype(settings.get("dtype", "auto"), config)
        self.device = self._rendezvous(settings.get("distributed_executor_backend"))
        longest = int(text["max_position_embeddings"])
        self.max_model_len = settings.get("max_model_len") or longest
        if self.max_model_len > longest:
            raise ValueError(
                f"User-specified max_model_len ({self.max_model_len}) is greater than the derived "
                f"max_model_len (max_position_embeddings={longest} in model's config.json)."
            )
        batched, seqs = settings.get("max_num_batched_tokens", 16384), settings.get("max_num_seqs", 1024)
        if batched < seqs:
            raise ValueError(
                f"max_num_batched_tokens ({batched}) must be greater than or equal to max_num_seqs ({seqs})."
            )
        self._check_memory(text, Path(model), float(settings.get("gpu_memory_utilization", 0.9)))
        self.sleep_mode = bool(settings.get("enable_sleep_mode", False))
        self.sleeping: set[str] = set()
        self.weights_version = 0  # how many times weights were loaded after the checkpoint's
        self.encoder_cache: dict[str, int] = {}  # image hash -> weights version its features came from
        self.served: list[tuple[int, int]] = []  # per request: (its features' version, the weights' version)
        self.requests: list = []
        self.params: list = []
        self.loaded: list[dict] = []
        self.prefix_cache_resets = 0
        self.calls: list[str] = []  # the order of load / reset / sleep / wake / generate calls
        model_module = types.SimpleNamespace(load_weights=self._load_weights)
        worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=model_module))
        wrapper = types.SimpleNamespace(worker=worker)  # vLLM's WorkerWrapperBase
        self.llm_engine = types.SimpleNamespace(
            model_executor=types.SimpleNamespace(driver_worker=wrapper),
            reset_encoder_cache=self._reset_encoder_cache,
        )

    # ------------------------------------------------------------------------------------------ start-up

    @staticmethod
    def _dtype(dtype: str, config: dict) -> str:
        if dtype != "auto":
            return dtype
        stored = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
        return "float16" if stored == "float32" else stored

    @staticmethod
    def _rendezvous(backend: str | None) -> str:
        """external_launcher's ``env://`` start: its variables, and the port (unless torch.distributed runs)."""
        if backend != "external_launcher":
            return "cuda:0"
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        if not dist.is_initialized():
            with socket.socket() as server:
                try:
                    server.bind((address, port))
                except OSError as error:
                    if error.errno != errno.EADDRINUSE:
                        raise
                    raise RuntimeError(
                        f"The server socket has failed to listen on any local network address. "
                        f"port: {port}, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use"
                    ) from error
        del rank
        return f"cuda:{local_rank}"

    def _check_memory(self, text: dict, folder: Path, utilization: float) -> None:
        """vLLM's ``_check_enough_kv_cache_memory``: one max-length sequence's KV cache beside the weights."""
        size = DTYPE_BYTES[self.dtype]
        head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
        per_token = 2 * text["num_hidden_layers"] * text["num_key_value_heads"] * head_dim * size
        stored = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        weights = stored * size // 4  # the fixtures store float32
        available = int(utilization * self.device_memory) - weights
        needed = per_token * self.max_model_len
        if needed > available:
            raise ValueError(
                f"To serve at least one request with the model's max seq len ({self.max_model_len}), "
                f"({needed / GIB:.2f} GiB KV cache is needed, which is larger than the available KV cache "
                f"memory ({available / GIB:.2f} GiB). Try increasing `gpu_memory_utilization` or decreasing "
                "`max_model_len` when initializing the engine."
            )

    # ------------------------------------------------------------------------------------------ serving

    def generate(self, requests, sampling_params, use_tqdm=True):
        self.calls.append("generate")
        if self.sleeping:
            raise RuntimeError(
                f"generate() on a sleeping engine ({sorted(self.sleeping)} asleep): wake_up() first"
            )
        requests, params = list(requests), list(sampling_params)
        self.requests, self.params = requests, params
        outputs = []
        for request, param in zip(requests, params):
            length = self.count_prompt_tokens(request)
            if length >= self.max_model_len:
                raise VLLMValidationError(
                    f"The decoder prompt (length {length}) is longer than the maximum model length of "
                    f"{self.max_model_len - 1}."
                )
            self.served.append((self._features_version(request), self.weights_version))
            outputs.append(types.SimpleNamespace(outputs=[self._completion(param)]))
        return outputs

    def _features_version(self, request) -> int:
        """The weights version of this request's vision features: cached per image hash (vLLM's encoder cache)."""
        image = np.asarray(request["multi_modal_data"]["image"])
        key = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()
        return self.encoder_cache.setdefault(key, self.weights_version)

    def _completion(self, param):
        stop_ids = list(param.stop_token_ids or ()) + self._generation_eos
        room = param.max_tokens
        if self.stops and len(self.answer) < room:
            ids, reason, stop = [*self.answer, stop_ids[0]], "stop", stop_ids[0]
        else:
            ids, reason, stop = list(self.answer)[:room], "length", None
        logprobs = None
        if param.logprobs is not None:
            logprobs = [{t: Logprob(RAW_LOGPROB(i), rank=1)} for i, t in enumerate(ids)]
        return types.SimpleNamespace(
            index=0, text="", token_ids=ids, cumulative_logprob=None, logprobs=logprobs,
            finish_reason=reason, stop_reason=stop,
        )  # fmt: skip

    # ----------------------------------------------------------------------------- weights, caches, sleep

    def _load_weights(self, pairs):
        if "weights" in self.sleeping:
            raise RuntimeError("load_weights() while the weights sleep: wake_up(tags=['weights']) first")
        self.calls.append("load")
        self.loaded.append(dict(pairs))
        self.weights_version += 1

    def _reset_encoder_cache(self) -> None:
        self.calls.append("reset_encoder_cache")
        self.encoder_cache.clear()

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        self.calls.append("reset_prefix_cache")
        self.prefix_cache_resets += 1
        return True

    def sleep(self, level: int = 1, mode: str = "abort") -> None:
        if not self.sleep_mode:
            raise ValueError("Sleep mode is not enabled: build the LLM with enable_sleep_mode=True")
        self.calls.append(f"sleep{level}")
        self.sleeping = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> bool:
        self.calls.append("wake_up" + ("" if tags is None else f"({','.join(tags)})"))
        self.sleeping -= set(tags or ("weights", "kv_cache"))
        return not self.sleeping


def _generation_eos(folder: Path) -> list[int]:
    """The generation config's eos ids, which vLLM adds to every request's stop ids."""
    path = folder / "generation_config.json"
    eos = json.loads(path.read_text()).get("eos_token_id") if path.exists() else None
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def fake_vllm_module() -> types.ModuleType:
    """A ``vllm`` module with the fake's ``LLM`` and ``SamplingParams``."""
    module = types.ModuleType("vllm")
    module.__version__ = "0.33.0-fake"
    module.LLM = FakeLLM
    module.SamplingParams = SamplingParams
    return module
