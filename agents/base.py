"""The agent: an RL algorithm is its maths; the loop of an update, the optimiser and the checkpoints are here.

To plug in another algorithm, subclass :class:`Agent`, set ``config_class`` (a
:class:`~agents.config.TrainConfig` subclass with its options) and implement :meth:`Agent.advantages`
(one number per answer from its group's rewards; or :meth:`Agent.update_advantages`, one per token, which
also sees the log-probs) and :meth:`Agent.loss` (a micro-batch's loss from log-probs); an agent whose update
is another shape may override :meth:`Agent.update` instead. Collection, scoring, logging, evaluation and
checkpoints are the :class:`~agents.trainer.Trainer`'s. Shapes: ``agents/rollout.py``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from agents.config import LR_SCHEDULERS, SetupError, TrainConfig
from agents.distributed import LogProbModule, Parallel
from agents.losses import as_loss, masked_mean, zero_std_fraction
from agents.policies.sampling import derive_seed
from agents.rollout import EpisodeGroup, Policy, Rollout, RolloutBatch, RolloutEngine, Sampling

__all__ = ["Agent", "EpisodeGroup", "RolloutBatch", "class_spec", "derive_seed"]


class Agent:
    """An RL algorithm acting through a :class:`~agents.rollout.Policy`.

    The base class builds the optimiser and learning-rate schedule from the config, runs an update
    (micro-batches, gradient accumulation, the optimiser step, the metrics) and checkpoints its state;
    a subclass supplies :meth:`advantages` and :meth:`loss`. Options that ask for a KL term
    (``config.uses_reference``) load a frozen reference model (:attr:`reference`).
    """

    config_class: ClassVar[type[TrainConfig]] = TrainConfig  # the agent's options: flags, YAML, checkpoints
    # the algorithm's registered name (``--agent NAME``, ``agents.registry.AGENTS``), declared by the class
    # itself: a subclass that does not declare one is another algorithm, named ``module:Class``
    name: ClassVar[str | None] = None
    reference: torch.nn.Module | None = None  # the frozen model of a KL term (see make_reference)

    def __init__(self, policy: Policy, config: TrainConfig, reference_model: torch.nn.Module | None = None):
        self.policy = policy
        self.config = config
        self.parallel = Parallel.single()
        self.trainable: torch.nn.Module = LogProbModule(policy, policy.model, config.temperature)
        self.optimizer, self.scheduler = self._build_optimizer()
        self.reference = self.make_reference(reference_model) if config.uses_reference else None
        self.engine: RolloutEngine = self.make_engine()
        self._spec: str | None = None  # set by agents.registry.make_agent

    @property
    def spec(self) -> str:
        """The agent's one name: the ``module:Class`` / ``file.py:Class`` it was built from, else its class's
        own :attr:`name`, else ``module:Class``. Checkpoints record it for ``--resume``."""
        return self._spec or class_spec(type(self))

    @spec.setter
    def spec(self, value: str) -> None:
        self._spec = value

    def _build_optimizer(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        c = self.config
        params = [p for p in self.policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=c.learning_rate, betas=(c.adam_beta1, c.adam_beta2), weight_decay=c.weight_decay
        )
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)

    def distribute(self, parallel: Parallel) -> None:
        """Train data-parallel (``agents/distributed.py``); call before the first update.

        The training forward then runs through DDP or FSDP2; under FSDP2 the parameters become shards,
        so the optimiser is rebuilt over them.
        """
        if parallel.shards_parameters and not self.engine.shares_weights:
            raise SetupError(
                f"--rollout-engine {self.engine.name} keeps its own copy of the weights, which --parallel fsdp "
                "does not send it: use --parallel ddp, or --rollout-engine fast"
            )
        self.parallel = parallel
        self.trainable = parallel.wrap(self.policy, temperature=self.config.temperature)
        if parallel.shards_parameters:
            self.optimizer, self.scheduler = self._build_optimizer()

    def make_engine(self) -> RolloutEngine:
        """What samples the rollouts: ``config.rollout_engine`` over the policy (``agents/engines/``)."""
        from agents.engines import make_engine

        return make_engine(
            self.config.rollout_engine, self.policy, config=self.config
        )  # vLLM sizes itself from the run's options

    def sync_engine_weights(self) -> None:
        """After an update: an engine with its own copy of the weights (vLLM) gets the policy's new ones."""
        if not self.engine.shares_weights:
            self.engine.load_weights(self.policy.model.state_dict())

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        if c.lr_scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - c.warmup_steps) / max(1, c.total_steps - c.warmup_steps))
        if c.lr_scheduler == "linear":
            return 1.0 - progress
        if c.lr_scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {c.lr_scheduler!r}")

    def make_reference(self, reference_model: torch.nn.Module | None) -> torch.nn.Module:
        """The frozen model of a KL term: ``reference_model``, else a copy of the starting policy. Loaded only
        when the options ask for it (``config.uses_reference``): without, half the memory."""
        reference = reference_model if reference_model is not None else copy.deepcopy(self.policy.model)
        return reference.eval().requires_grad_(False)

    def micro_batches(self, n: int) -> list[torch.Tensor]:
        """Completion indices in chunks of ``config.micro_batch_size`` (0 = one chunk of all ``n``)."""
        size = self.config.micro_batch_size or n
        return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]

    def chunk_weights(self, mask: torch.Tensor, chunks: list[torch.Tensor], token_level: bool) -> list[float]:
        """Weights that make the sum of the chunks' losses the loss of the whole (global) batch.

        ``mask``: [N, T] completion tokens of this rank. A per-answer mean weighs a chunk by its share of
        answers; a token-level mean by its share of the tokens of *every* rank's batch, times the number
        of ranks, since DDP / FSDP2 average gradients over ranks.

        The token-level weights also average per-token metrics (KL, entropy, ratio, clip fraction): summed
        over chunks and averaged over ranks, they give the mean over every token of the global batch, the
        same figure whatever ``micro_batch_size``.
        """
        if not token_level:
            return [len(idx) / mask.shape[0] for idx in chunks]
        tokens_per_rank = float(self.parallel.all_sum(mask.sum()).clamp(min=1)) / self.parallel.world_size
        return [float(mask[idx].sum()) / tokens_per_rank for idx in chunks]

    # ------------------------------------------------------------- acting
    def sample(
        self, observations: list[dict[str, Any]], *, step: int, positions: Sequence[int] | None = None
    ) -> Any:
        """G answers per observation. Observation ``positions[b]`` of step ``step`` (default: ``b``) samples
        with seed ``(seed, step, position)``: a resumed run, or the same step split over other ranks or
        micro-batches, draws the same answers."""
        c = self.config
        positions = range(len(observations)) if positions is None else positions
        sampling = Sampling(
            temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, max_new_tokens=c.max_new_tokens
        )
        return self.parallel.generate(
            self.engine,
            observations,
            num_samples=c.group_size,
            sampling=sampling,
            observation_seeds=[derive_seed(c.seed, step, 1, p) for p in positions],
        )

    def act_greedy(self, observations: list[dict[str, Any]], max_new_tokens: int | None = None) -> list[str]:
        """One deterministic answer per observation (evaluation)."""
        sampling = Sampling(max_new_tokens=max_new_tokens or self.config.max_new_tokens, do_sample=False)
        rollout = self.parallel.generate(self.engine, observations, num_samples=1, sampling=sampling)
        return list(rollout.texts)

    # ------------------------------------------------------------ learning
    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """``[B, G]`` advantages of this rank's groups from their rewards ``[B, G]`` (the algorithm's maths).

        In a data-parallel run ``rewards`` are this rank's groups; statistics over the whole batch go
        through ``self.parallel`` (e.g. ``all_gather_rows``)."""
        raise NotImplementedError(f"{type(self).__name__}: implement advantages() and loss(), or update()")

    def batch_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``[B, G]`` advantages of the batch: :meth:`advantages` of its rewards. An algorithm that reads more
        of the batch than the rewards (e.g. each reward component of the env's ``info``) overrides this."""
        return self.advantages(batch.rewards)

    def update_advantages(
        self,
        batch: RolloutBatch,
        mask: torch.Tensor,  # [N, T] float: the loss mask (loss_mask)
        old_logp: torch.Tensor | None,  # [N, T] under the policy that sampled; None unless keeps_old_logprobs
        ref_logp: torch.Tensor | None,  # [N, T] under the frozen reference, when there is one
    ) -> torch.Tensor:
        """The advantages the update learns from: ``[N]``, one per answer (by default :meth:`batch_advantages`,
        observation-major), or ``[N, T]``, one per token. An algorithm whose advantages read the log-probs
        (e.g. a KL to the reference folded into the reward, REINFORCE++) overrides this, and
        :attr:`keeps_old_logprobs` when it reads ``old_logp``."""
        return self.batch_advantages(batch).flatten()

    def loss_mask(self, batch: RolloutBatch) -> torch.Tensor:
        """``[N, T]`` the tokens the loss learns from: every completion token. An algorithm that leaves some
        out (e.g. truncated completions) overrides this; micro-batches are weighed by this mask's tokens."""
        return batch.rollout.completion_mask

    def loss(
        self,
        logp: torch.Tensor,  # [n, T] log-probs under the policy being trained (with grad)
        advantages: torch.Tensor,  # [n], or [n, T] where update_advantages gives one per token
        mask: torch.Tensor,  # [n, T] float, 1 on completion tokens
        old_logp: torch.Tensor,  # [n, T] under the policy that sampled (no grad; = logp.detach() on-policy)
        ref_logp: torch.Tensor | None,  # [n, T] under the frozen reference, when there is one
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """A micro-batch's loss, aggregated over its ``n`` completions as the algorithm aggregates the whole
        batch, and its metrics (``"loss"`` and per-token means, e.g. ``"kl"``): a :class:`~agents.losses.Loss`,
        which says what the loss is a mean over (answers or tokens), or a plain ``(loss, metrics)`` for a mean
        over answers. The loop weighs each micro-batch by its share of that unit, so that their sum is the
        loss of the whole (global) batch."""
        raise NotImplementedError(f"{type(self).__name__}: implement advantages() and loss(), or update()")

    @property
    def iterations(self) -> int:
        """Optimiser steps per rollout batch (> 1: the log-probs of the policy that sampled are kept)."""
        return 1

    @property
    def keeps_old_logprobs(self) -> bool:
        """Whether the update first scores the batch under the policy that sampled (one more forward, without
        grad): needed by more than one iteration, or by advantages that read them (:meth:`update_advantages`)."""
        return self.iterations > 1

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Learn from one rollout batch; return scalar metrics (logged under ``train/``).

        Per iteration: every micro-batch's loss is back-propagated (gradients reduced over ranks at the
        last), then one clipped optimiser step; the schedule advances once per batch. In a data-parallel
        run ``batch`` is this rank's shard and the loss is normalised as if it were the whole batch.
        Metrics are means over the global batch (per-token ones over its tokens), whatever the micro-batch
        size; ``entropy`` is ``E[-log p(x)]`` over the sampled tokens, the tempered policy's entropy per token
        (with top-p / top-k, the cross-entropy from the truncated sampler to it).
        """
        rollout = batch.rollout
        mask = self.loss_mask(batch).float()  # [N, T]
        chunks = self.micro_batches(mask.shape[0])
        # each micro-batch's share of the answers, and of every rank's tokens (also the per-token metrics')
        weights = {
            "answers": self.chunk_weights(mask, chunks, token_level=False),
            "tokens": self.chunk_weights(mask, chunks, token_level=True),
        }
        token_weights = weights["tokens"]
        iterations = self.iterations
        self.policy.model.train()
        old_logp = self._logprobs_no_grad(rollout, chunks) if self.keeps_old_logprobs else None
        ref_logp = (
            self._logprobs_no_grad(rollout, chunks, reference=True) if self.reference is not None else None
        )
        # [N] (observation-major) or [N, T]
        advantages = self.update_advantages(batch, mask, old_logp, ref_logp).to(mask.device)

        sums: dict[str, float] = {}
        entropy = grad_norm = 0.0
        learning_rate = self.scheduler.get_last_lr()[0]  # the rate of every iteration on this batch
        for iteration in range(iterations):
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for k, idx in enumerate(chunks):
                with self.accumulate(last=k == len(chunks) - 1):
                    logp = self.logprobs(rollout.select(idx))  # [n, T], with grad
                    old = old_logp[idx] if old_logp is not None else logp.detach()
                    ref = ref_logp[idx] if ref_logp is not None else None
                    out = as_loss(self.loss(logp, advantages[idx], mask[idx], old, ref))
                    weight = weights[out.mean_over][k]
                    (out.value * weight).backward()
                loss_sum += out.metrics["loss"] * weight
                for key, value in out.metrics.items():
                    share = weight if key == "loss" else token_weights[k]
                    sums[key] = sums.get(key, 0.0) + value * share / iterations
                if iteration == 0:
                    entropy += float(masked_mean(-old, mask[idx])) * token_weights[k]
            grad_norm = self.clip_and_step(
                step=batch.step, loss=loss_sum, advance_schedule=iteration == iterations - 1
            )
        return {
            **sums,
            "entropy": entropy,
            "grad_norm": grad_norm,
            # per answer, or per token of the loss mask
            "advantage_abs_mean": float(
                advantages.abs().mean() if advantages.ndim == 1 else masked_mean(advantages.abs(), mask)
            ),
            "frac_reward_zero_std": zero_std_fraction(batch.rewards),
            "learning_rate": learning_rate,
        }

    @torch.no_grad()
    def _logprobs_no_grad(
        self, rollout: Rollout, chunks: list[torch.Tensor], reference: bool = False
    ) -> torch.Tensor:
        """``[N, T]`` log-probs of the policy (or the reference) micro-batch by micro-batch, without grad."""
        score = self.reference_logprobs if reference else self.logprobs
        return torch.cat([score(rollout.select(i)) for i in chunks])

    def logprobs(self, rollout: Rollout) -> torch.Tensor:
        """Completion log-probs [N, T] under the policy being trained, differentiable.

        Scored with the distribution that sampled the answers, ``softmax(logits / temperature)`` (as TRL);
        top-p / top-k truncation is not applied (README, "Training")."""
        return self.trainable(rollout)

    @torch.no_grad()
    def reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        """Completion log-probs [N, T] under the frozen :attr:`reference`, scored as :meth:`logprobs`."""
        if self.reference is None:
            raise ValueError(f"{self.spec}: no reference model was loaded (its options use none: beta == 0)")
        temperature = self.config.temperature
        return self.policy.completion_logprobs(rollout, model=self.reference, temperature=temperature)

    def accumulate(self, last: bool):
        """Context for one micro-batch's backward: gradients are reduced over ranks only at the ``last``."""
        return self.parallel.no_gradient_sync(skip=not last)

    def clip_and_step(
        self, *, step: int | None = None, loss: float | None = None, advance_schedule: bool = True
    ) -> float:
        """Gradient-norm clip (if set) and optimiser step; returns the pre-clip norm.

        ``advance_schedule``: also step the learning-rate schedule. The schedule counts rollout batches, so
        an agent that steps the optimiser several times per batch passes True only at the last of them.
        A non-finite ``loss`` (the value just back-propagated), gradient norm or learning rate raises
        :class:`FloatingPointError` naming which and ``step`` (the rollout batch's, ``RolloutBatch.step``);
        the gradients are then dropped and nothing is stepped.
        """
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        grad_norm = float(norm)  # the same on every rank (gradients are reduced): all raise, or none
        self._refuse_non_finite(step, loss, grad_norm)
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.config.max_grad_norm, norm)
        self.optimizer.step()
        if advance_schedule:
            self.scheduler.step()
            self.sync_engine_weights()  # the batch's last step: the next rollouts sample the new weights
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _refuse_non_finite(self, step: int | None, loss: float | None, grad_norm: float) -> None:
        """Raise, the gradients dropped, if the loss, the gradient norm or the learning rate is NaN or inf."""
        learning_rate = self.optimizer.param_groups[0]["lr"]
        if loss is not None and not math.isfinite(loss):
            problem = f"the loss is {loss}"
            cause = (
                "the weights already hold NaN/inf (an earlier step with too high a learning rate), "
                "or a float16 overflow (try --dtype bfloat16 or float32)"
            )
        elif not math.isfinite(grad_norm):
            problem = f"the gradient norm is {grad_norm}" + ("" if loss is None else f" (loss {loss:.6g})")
            cause = (
                "an overflow in backward: float16 (try --dtype bfloat16 or float32) or extreme "
                "probability ratios (lower --learning-rate)"
            )
        elif not math.isfinite(learning_rate):
            problem = f"the learning rate is {learning_rate}"
            cause = "--learning-rate (times the schedule's factor) must be a finite number"
        else:
            return
        self.optimizer.zero_grad(set_to_none=True)
        # 1-based, as the logs and checkpoints count: step-000001 holds the update of rollout batch 0
        where = "" if step is None else f" step {step + 1} of {self.config.total_steps}"
        raise FloatingPointError(
            f"{self.spec}{where}: {problem}; the optimiser was not stepped. Likely cause: {cause}."
        )

    # --------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything but the policy weights (saved by the policy itself); full tensors, on every rank."""
        return {
            "optimizer": self.parallel.optimizer_state(self.trainable, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.parallel.load_optimizer_state(self.trainable, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def class_spec(agent_cls: type[Agent]) -> str:
    """The one name of ``agent_cls``: the :attr:`Agent.name` it declares itself, else ``module:Class``."""
    return vars(agent_cls).get("name") or f"{agent_cls.__module__}:{agent_cls.__qualname__}"
