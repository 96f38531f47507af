"""Supervised warm start on an env's oracle answers (the paper compares SFT, RL and SFT+RL).

A randomly initialised model cannot follow an answer format, so RL from
scratch collapses (docs/learning-on-a-cpu.md); a short supervised phase on the env's own
perfect answers gives GRPO a starting point whose groups disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.arguments import bound_problem
from agents.base import derive_seed
from agents.config import SetupError
from agents.losses import masked_mean
from agents.trainer import DataOrder
from perception_env.rewards.counting import target_points

log = logging.getLogger("agents.sft")


TARGET_ORDERS = ("random", "sorted", "listed")


def object_order(env: gym.Env, index: int, order: str = "random", seed: int = 0) -> list[int] | None:
    """The order in which supervision lists the current sample's objects (sample ``index``).

    ``"random"``: a permutation drawn from ``(seed, index)`` alone, as real annotation files list
    objects in no particular order (the same image, the same order, on every call and machine).
    ``"sorted"``: reading order, top to bottom then left to right by centre (ties keep the dataset's
    order): one fixed order a model can learn to follow. ``"listed"``: as the dataset lists them
    (``None``). An unordered matched reward scores all three alike; an order-sensitive one does not.
    """
    if order not in TARGET_ORDERS:
        raise SetupError(f"target_order must be one of {', '.join(TARGET_ORDERS)}; got {order!r}")
    centres = target_points(env.unwrapped.sample)  # [N, 2] x, y pixels: box centres or points
    if order == "listed" or len(centres) < 2:
        return None
    if order == "sorted":
        return [int(i) for i in np.lexsort((centres[:, 0], centres[:, 1]))]  # last key (y) first
    rng = np.random.default_rng(derive_seed(seed, 5, index))
    return [int(i) for i in rng.permutation(len(centres))]


def oracle_batch(
    env: gym.Env, indices: list[int], order: str = "listed", seed: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Observations and the oracle's answers for dataset ``indices``, objects in ``order``
    (:func:`object_order`; ``seed`` draws the random order)."""
    observations, answers = [], []
    for i in indices:
        obs, _ = env.reset(options={"index": i})
        observations.append(obs)
        answers.append(env.unwrapped.oracle_answer(object_order=object_order(env, i, order, seed)))
    return observations, answers


def oracle_indices(env: gym.Env, exclude_answers: Collection[str] = ()) -> list[int]:
    """Dataset indices whose oracle answer is not in ``exclude_answers``.

    A warm start that never saw some answers (e.g. counts 2 and 3) is the
    kind of imperfect starting point where RL shows what it adds: it can
    find, by trial and reward, answers that supervision never showed.
    """
    keep = []
    for i in range(len(env.unwrapped.dataset)):
        env.reset(options={"index": i})
        if env.unwrapped.oracle_answer() not in exclude_answers:
            keep.append(i)
    if not keep:
        raise ValueError(f"every sample's answer is in exclude_answers={sorted(exclude_answers)}")
    return keep


def supervised_warm_start(
    policy: Any,
    env: gym.Env,
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    log_every: int = 0,
    exclude_answers: Collection[str] = (),
    optimizer: torch.optim.Optimizer | None = None,
    start_step: int = 0,
    progress: bool = False,
    target_order: str = "random",
) -> list[float]:
    """``steps`` AdamW steps of next-token cross-entropy on oracle answers; returns the losses.

    ``exclude_answers``: leave out samples whose perfect answer is one of these.
    ``optimizer`` / ``start_step``: continue an earlier call (same Adam moments, next data).
    ``target_order``: the order the answers list an image's objects, ``"random"`` per image (as real
    annotation files), ``"sorted"`` (reading order) or ``"listed"`` (the dataset's): :func:`object_order`.
    ``progress``: a progress bar with the loss (the ``log_every`` lines then go to the debug level).
    A non-finite loss or gradient norm raises :class:`FloatingPointError` naming the step, before the
    optimiser steps: the weights stay finite.
    """
    for name, value, bounds in (
        ("steps", steps, {"minimum": 0}),
        ("batch_size", batch_size, {"minimum": 1}),
        ("learning_rate", learning_rate, {"exclusive_minimum": 0}),
    ):
        problem = bound_problem(value, **bounds)
        if problem:
            raise SetupError(f"supervised_warm_start: {name} {problem}; got {value!r}")
    if target_order not in TARGET_ORDERS:
        raise SetupError(
            f"supervised_warm_start: target_order must be one of {TARGET_ORDERS}; got {target_order!r}"
        )
    pool = (
        oracle_indices(env, exclude_answers) if exclude_answers else list(range(len(env.unwrapped.dataset)))
    )
    order = DataOrder(len(pool), derive_seed(seed, 3))
    if optimizer is None:
        optimizer = torch.optim.AdamW(
            [p for p in policy.model.parameters() if p.requires_grad], lr=learning_rate
        )
    policy.model.train()
    losses = []
    bar = _bar(start_step, start_step + steps) if progress else None
    for step in range(start_step, start_step + steps):
        observations, answers = oracle_batch(
            env, [pool[i] for i in order.indices(step, batch_size)], target_order, seed
        )
        rollout = policy.teacher_forcing(observations, answers)
        logp = policy.completion_logprobs(rollout)  # [B, T]
        loss = -masked_mean(logp, rollout.completion_mask.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(policy.model.parameters(), 1.0)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(
                f"sft step {step + 1}: the loss is {loss.item()}, the gradient norm {float(norm)}; the "
                "optimiser was not stepped (weights holding NaN/inf already, or a float16 overflow)"
            )
        optimizer.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)  # drawn at most every mininterval
        if log_every and (step + 1) % log_every == 0:
            level = logging.DEBUG if bar is not None else logging.INFO
            log.log(level, "sft step %d/%d: loss %.4f", step + 1, start_step + steps, loss.item())
    if bar is not None:
        bar.close()
    return losses


def _bar(first: int, last: int):
    from tqdm.auto import tqdm

    return tqdm(total=last, initial=first, desc="sft", unit="step", dynamic_ncols=True, mininterval=2.0)
