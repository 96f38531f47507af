"""TRL 1.16's own GRPO loss, run on given tensors: the reference the GRPO variants are checked against.

``trl_compute_loss`` calls the real ``GRPOTrainer._compute_loss`` (not a restatement of it) on a trainer
that was never built: only the attributes ``_compute_loss`` reads are set, the model's forward is replaced
by one that returns the given log-probs and entropies, and the accelerator is that of one process with no
gradient accumulation (TRL then normalises by the batch it is given, as one micro-batch of ours does).
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import textwrap
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import torch

trl = __import__("pytest").importorskip("trl")
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

_ARGS_CACHE: dict[tuple, GRPOConfig] = {}


def trl_config(**options: Any) -> GRPOConfig:
    """TRL's own GRPOConfig with ``options`` (its defaults for the rest); built once per set of options."""
    key = tuple(sorted(options.items()))
    if key not in _ARGS_CACHE:
        # report_to="none": no logger integration is looked for; use_cpu, bf16: no GPU is asked for;
        # the folder is never written
        _ARGS_CACHE[key] = GRPOConfig(
            output_dir=tempfile.gettempdir(), report_to="none", use_cpu=True, bf16=False, **options
        )
    return _ARGS_CACHE[key]


class _OneProcess:
    """The accelerator of a single process: gathers and reductions return their input."""

    num_processes = 1
    process_index = 0
    sync_gradients = True

    def gather(self, tensor):
        return tensor

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def pad_across_processes(self, tensor, dim=0, pad_index=0):
        return tensor

    def gather_for_metrics(self, tensor):
        return tensor


def trl_compute_loss(
    logp: torch.Tensor,  # [N, T] with grad: what the model's forward returns
    old_logp: torch.Tensor | None,  # [N, T]; None: TRL uses logp.detach() (on-policy)
    advantages: torch.Tensor,  # [N]
    mask: torch.Tensor,  # [N, T] completion mask
    ref_logp: torch.Tensor | None = None,  # [N, T] when beta != 0
    entropies: torch.Tensor | None = None,  # [N, T] (with grad for entropy_coef); default zeros
    importance_sampling_ratio: torch.Tensor | None = None,  # the engine correction (trl_sampling_correction)
    sampling_logp: torch.Tensor | None = None,  # [N, T] the engine's log-probs (TRL's vLLM ones)
    trainer: Any = None,  # a trl_trainer(...) whose state carries over (adaptive entropy); else a new one
    **options: Any,  # GRPOConfig options, e.g. loss_type="cispo", epsilon_high=5.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, metrics)`` of ``GRPOTrainer._compute_loss`` on these tensors; metrics as TRL logs them."""
    trainer = (
        trl_trainer(use_vllm=importance_sampling_ratio is not None, **options) if trainer is None else trainer
    )
    trainer._metrics["train"].clear()
    entropies = torch.zeros_like(logp) if entropies is None else entropies
    object.__setattr__(trainer, "_get_per_token_logps_and_entropies", lambda *a, **k: (logp, entropies, None))
    n, t = mask.shape
    inputs = {
        "prompt_ids": torch.zeros(n, 1, dtype=torch.long),
        "prompt_mask": torch.ones(n, 1, dtype=torch.long),
        "completion_ids": torch.zeros(n, t, dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "num_items_in_batch": mask.sum(),  # the whole (one-process) batch is this micro-batch
    }
    if old_logp is not None:
        inputs["old_per_token_logps"] = old_logp
    if ref_logp is not None:
        inputs["ref_per_token_logps"] = ref_logp
    if importance_sampling_ratio is not None:
        inputs["importance_sampling_ratio"] = importance_sampling_ratio
    if sampling_logp is not None:
        inputs["sampling_per_token_logps"] = sampling_logp
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return loss, metrics


def trl_trainer(use_vllm: bool = False, accumulation_steps: int = 1, **options: Any) -> GRPOTrainer:
    """A ``GRPOTrainer`` that was never built, with only what ``_compute_loss`` reads: TRL's own options
    (``options``), one process, ``accumulation_steps`` micro-batches an optimiser step (its accelerator's
    ``sync_gradients`` is set by the caller at the last)."""
    args = trl_config(**options)
    trainer = GRPOTrainer.__new__(GRPOTrainer)  # no __init__: no model, no data, no accelerate state
    attributes = dict(
        args=args,
        model=SimpleNamespace(training=True),
        accelerator=_OneProcess(),
        current_gradient_accumulation_steps=accumulation_steps,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        aux_loss_enabled=False,
        _entropy_bonus_enabled=args.entropy_coef != 0.0 or args.use_adaptive_entropy,
        entropy_coef=args.entropy_coef,
        use_adaptive_entropy=args.use_adaptive_entropy,
        _last_world_entropy=float("inf"),
        _entropy_window_stats=None,
        use_vllm=use_vllm,
        vllm_importance_sampling_correction=use_vllm,
        off_policy_mask_threshold=args.off_policy_mask_threshold,
        loss_type=args.loss_type,
        beta=args.beta,
        epsilon_low=args.epsilon,
        epsilon_high=args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        importance_sampling_level=args.importance_sampling_level,
        top_entropy_quantile=args.top_entropy_quantile,
        max_completion_length=args.max_completion_length,
    )
    for name, value in attributes.items():
        object.__setattr__(trainer, name, value)
    return trainer


def _trl_block(first_line: str, end_line: str) -> str:
    """The lines of TRL's ``_generate_and_score_completions`` from ``first_line`` up to (not including)
    ``end_line``, dedented: its own code, run as it is (a changed TRL fails here, loudly)."""
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    start = source.index(first_line)
    start = source.rindex("\n", 0, start) + 1  # from the start of that line, with its indent
    return textwrap.dedent(source[start : source.index(end_line, start)])


# the engine correction's ratio, and its metrics: two blocks of TRL's generation step
_RATIO_BLOCK = (
    "# Compute the importance sampling ratio when using vLLM",
    "# Compute the per-token log probabilities for the reference model",
)
_METRICS_BLOCK = ("delta = torch.abs(old_per_token_logps - sampling_per_token_logps)", "output = {")


def trl_sampling_correction(
    old_logp: torch.Tensor,  # [N, T] the trainer's
    sampling_logp: torch.Tensor,  # [N, T] the engine's
    mask: torch.Tensor,  # [N, T] completion mask
    **options: Any,  # vllm_importance_sampling_mode, vllm_importance_sampling_clip_min / _max
) -> tuple[torch.Tensor, dict[str, float]]:
    """TRL 1.16's ``vllm_importance_sampling_ratio`` (``[N, T]`` or ``[N, 1]``) and the ``sampling/`` metrics
    it logs, from TRL's own lines of ``_generate_and_score_completions`` run on these tensors."""
    args = trl_config(**options)
    trainer = GRPOTrainer.__new__(GRPOTrainer)
    for name, value in dict(
        use_vllm=True,
        vllm_importance_sampling_correction=True,
        vllm_importance_sampling_mode=args.vllm_importance_sampling_mode,
        vllm_importance_sampling_clip_min=args.vllm_importance_sampling_clip_min,
        vllm_importance_sampling_clip_max=args.vllm_importance_sampling_clip_max,
        accelerator=_OneProcess(),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    ).items():
        object.__setattr__(trainer, name, value)
    module = sys.modules[GRPOTrainer.__module__]
    scope = {
        **vars(module),
        "self": trainer,
        "old_per_token_logps": old_logp,
        "sampling_per_token_logps": sampling_logp,
        "completion_mask": mask,
        "tool_mask": None,
        "mode": "train",
        "device": old_logp.device,
    }
    exec(_trl_block(*_RATIO_BLOCK), scope)
    exec(_trl_block(*_METRICS_BLOCK), scope)  # the body of TRL's `if use_vllm and ..._correction:`
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return scope["vllm_importance_sampling_ratio"], metrics
