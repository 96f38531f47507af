"""Data-parallel training over ``torch.distributed``: DDP, or FSDP2 for models that do not fit one GPU.

Launch any ``perception-r1 train`` command with ``torchrun`` (or ``accelerate launch``)::

    torchrun --nproc_per_node 8 -m agents.cli train --env PerceptionR1/Counting-v0 --model DIR --device cuda
    torchrun --nproc_per_node 2 -m agents.cli train ... --parallel fsdp     # parameters, grads, Adam sharded

How a step is split (``W`` ranks, ``B = prompts_per_step`` groups, ``B % W == 0``):

* rank ``r`` takes groups ``r*B/W .. (r+1)*B/W - 1`` of the step's global batch (the single-process
  order), samples their ``G`` answers with the groups' own seeds (``agents/policies/sampling.py``) and
  scores them itself: answers never travel, rewards are gathered only for logging;
* each rank's loss is the loss of its shard, normalised as if it were the whole batch; DDP / FSDP2
  average the gradients over ranks, which gives the single-process gradient (token-level losses use
  the global token count, :meth:`Parallel.all_sum`);
* metrics are averaged over ranks; rank 0 writes logs and checkpoints. Checkpoints hold full,
  unsharded tensors, so a run resumes on any number of ranks.

The training forward goes through one module, :class:`LogProbModule`, whose ``forward`` is the policy's
completion log-prob pass: that module is what DDP or FSDP2 wraps, so their gradient hooks see every
parameter used. One process (no ``torchrun``) is ``Parallel.single()``: no wrapper, no collectives.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from agents.config import PARALLEL_STRATEGIES as STRATEGIES


class LogProbModule(torch.nn.Module):
    """``forward(rollout) -> [N, T]`` completion log-probs of ``model`` (the policy's, or a reference).

    ``temperature``: the logits are divided by it, so that the log-probs are those of the distribution the
    answers were sampled from (the rollouts' sampling temperature).
    """

    def __init__(self, policy: Any, model: torch.nn.Module, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.temperature = temperature
        self._policy = [policy]  # a list: the policy is not a Module and must not be registered as one

    def forward(
        self, rollout: Any = None, *, generate: dict[str, Any] | None = None, with_entropy: bool = False
    ) -> Any:
        """Log-probs of ``rollout`` (``with_entropy``: and the entropies, ``completion_logprobs``'); or, with
        ``generate=kwargs``, ``sampler.generate(**kwargs)`` (``sampler``: a rollout engine in the kwargs, else
        the policy): under FSDP2 sampling must also enter through the root module, which gathers the
        parameters it holds."""
        if generate is not None:
            kwargs = dict(generate)
            sampler = kwargs.pop("sampler", None) or self._policy[0]
            return sampler.generate(**kwargs)
        policy, temperature = self._policy[0], self.temperature
        if with_entropy:
            return policy.completion_logprobs(
                rollout, model=self.model, temperature=temperature, with_entropy=True
            )
        return policy.completion_logprobs(rollout, model=self.model, temperature=temperature)


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) in a plain process."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


@dataclass
class Parallel:
    """Where this process sits in a data-parallel run, and the collectives the training loop needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "ddp"
    wrapped: torch.nn.Module | None = None  # the DDP / FSDP2 module around LogProbModule(policy)
    _owns_group: bool = field(default=False, repr=False)

    @classmethod
    def single(cls) -> Parallel:
        return cls()

    @classmethod
    def from_environment(cls, device: str, strategy: str = "ddp") -> Parallel:
        """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); ``single()`` without one."""
        if strategy not in STRATEGIES:
            raise ValueError(f"parallel must be one of {STRATEGIES}, got {strategy!r}")
        rank, world_size, local_rank = env_world()
        if world_size == 1:
            return cls(strategy=strategy)
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
            owns = True
        return cls(rank, world_size, local_rank, strategy, _owns_group=owns)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shards_parameters(self) -> bool:
        return self.enabled and self.strategy == "fsdp"

    def device(self, device: str) -> str:
        """This rank's device: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a multi-process run."""
        if self.enabled and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def describe(self, model: torch.nn.Module) -> str:
        """One line for the log: strategy, ranks, and the parameters this rank holds."""
        from torch.distributed.tensor import DTensor

        local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())
        total = sum(p.numel() for p in model.parameters())
        return f"{self.strategy} over {self.world_size} ranks; rank {self.rank} holds {local:,} of {total:,} parameters"

    # ------------------------------------------------------------------ data
    def shard(self, global_batch: int) -> range:
        """Positions ``0 .. global_batch-1`` of a step that this rank handles (contiguous, equal sizes)."""
        if global_batch % self.world_size:
            raise ValueError(
                f"prompts_per_step={global_batch} must be divisible by the number of ranks ({self.world_size})"
            )
        size = global_batch // self.world_size
        return range(self.rank * size, (self.rank + 1) * size)

    # ------------------------------------------------------------ collectives
    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, on ``value``'s device."""
        if not self.enabled:
            return value
        out = self._on_backend_device(value.detach().clone())
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(value.device)

    def all_gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``[b, ...]`` tensor in rank order: ``[W*b, ...]`` (equal ``b``), on
        ``rows``' device."""
        if not self.enabled:
            return rows
        mine = self._on_backend_device(rows.contiguous())
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine)
        return torch.cat(parts).to(rows.device)

    def mean_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each scalar averaged over ranks (each rank's is a mean over an equal shard)."""
        if not self.enabled or not metrics:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
        values = self._on_backend_device(values)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return {k: float(v) / self.world_size for k, v in zip(keys, values.tolist())}

    def gather_objects(self, items: list[Any]) -> list[Any]:
        """Every rank's list, concatenated in rank order (on every rank)."""
        if not self.enabled:
            return items
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [x for part in parts for x in part]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (e.g. a run folder named after the time)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _on_backend_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """NCCL reduces CUDA tensors only; rewards and metrics live on the CPU."""
        return tensor.cuda() if dist.get_backend() == "nccl" else tensor

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()

    # --------------------------------------------------------------- wrapping
    def wrap(self, policy: Any, temperature: float = 1.0) -> torch.nn.Module:
        """The module whose forward the agent trains through (before its optimiser is built): log-probs of
        ``policy`` with its logits divided by ``temperature`` (the sampling temperature)."""
        module = LogProbModule(policy, policy.model, temperature)
        if not self.enabled:
            self.wrapped = module
        elif self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.local_rank] if policy.device.type == "cuda" else None
            # buffers (rotary frequencies) are equal by construction: no broadcast every forward
            self.wrapped = DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)
        else:
            policy.synced_gpus = True  # ranks that finish early keep stepping: FSDP gathers are collective
            self.wrapped = shard_fully(module)
        return self.wrapped

    def generate(self, sampler: Any, observations: Any, **kwargs: Any) -> Any:
        """``sampler.generate(observations, **kwargs)`` (a rollout engine, or a policy); under FSDP2 through
        the sharded root, every rank stepping in lockstep."""
        if not self.shards_parameters:
            return sampler.generate(observations, **kwargs)
        return self.wrapped(generate={"sampler": sampler, "observations": observations, **kwargs})

    def no_gradient_sync(self, skip: bool):
        """Accumulate this micro-batch's gradients locally (``skip``) or reduce them (the last one)."""
        if not (self.enabled and skip):
            return contextlib.nullcontext()
        if self.strategy == "ddp":
            return self.wrapped.no_sync()
        return _fsdp_no_sync(self.wrapped)

    # ------------------------------------------------------------ checkpoints
    # Checkpoints hold full tensors keyed by parameter name whatever the strategy, so that a run resumes
    # on any number of ranks, with DDP, FSDP2 or in one process.

    def optimizer_state(self, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        """``{"state": {name: {...}}, "param_groups": [{..., "params": [name, ...]}]}`` (full tensors;
        under FSDP2 a collective, whose result only rank 0 receives). Names are those of
        ``policy.model.named_parameters()``."""
        if self.shards_parameters:
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            state = get_optimizer_state_dict(wrapped, optimizer, options=_full_options())
            # gathered on rank 0 only (cpu_offload): the other ranks get {} and write nothing
            return _rename(state, lambda name: name.removeprefix(_PREFIX)) if state else {}
        names = _trainable_names(wrapped)
        return _rename(optimizer.state_dict(), lambda index: names[index])

    def load_optimizer_state(
        self, wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        if self.shards_parameters:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            state = _rename(state, lambda name: _PREFIX + name)
            set_optimizer_state_dict(
                wrapped, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
            )
            return
        index = {name: i for i, name in enumerate(_trainable_names(wrapped))}
        unknown = sorted(set(state["state"]) - set(index))
        if unknown:
            raise ValueError(f"optimiser state for parameters this model does not train: {unknown[:3]} ...")
        optimizer.load_state_dict(_rename(state, index.__getitem__))

    def full_model_state(self, wrapped: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """FSDP2: the policy model's full state dict (a collective; keys as ``model.state_dict()``); else None."""
        if not self.shards_parameters:
            return None
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(wrapped, options=_full_options())
        return {k.removeprefix("model."): v for k, v in state.items()}


def shard_fully(module: LogProbModule) -> torch.nn.Module:
    """FSDP2: each decoder layer and vision block its own shard group, the rest in the root's."""
    from torch.distributed.fsdp import fully_shard

    inner = module.model.model  # Qwen2VLModel / Qwen2_5_VLModel: .visual, .language_model
    for block in inner.visual.blocks:
        fully_shard(block)
    for layer in inner.language_model.layers:
        fully_shard(layer)
    return fully_shard(module)


@contextlib.contextmanager
def _fsdp_no_sync(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


_PREFIX = "model."  # LogProbModule holds the policy model as .model


def _trainable_names(wrapped: torch.nn.Module) -> list[str]:
    """Names of the trained parameters, in the order the optimiser holds them (``Agent._build_optimizer``)."""
    module = getattr(wrapped, "module", wrapped)  # DDP keeps the LogProbModule as .module
    return [name for name, p in module.model.named_parameters() if p.requires_grad]


def _rename(state: dict, key) -> dict:
    """An optimiser state dict with every parameter key (index or name) passed through ``key``."""
    return {
        "state": {key(k): v for k, v in state["state"].items()},
        "param_groups": [{**g, "params": [key(k) for k in g["params"]]} for g in state["param_groups"]],
    }
