"""Adaptive entropy control (TRL 1.16's ``use_adaptive_entropy``) against TRL's own ``_compute_loss`` over several
optimiser steps of two micro-batches each: the coefficient's path, the loss and gradients, the logged metrics;
and a resumed run that keeps the coefficient."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from agents.checkpoints import latest_checkpoint, read_state
from agents.cli import train
from agents.config import SetupError
from agents.distributed import Parallel
from agents.grpo.adaptive_entropy import AdaptiveEntropy
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.policies.qwen_vl import QwenVLPolicy
from tests.agents.grpo.test_variants import _batch
from tests.agents.grpo.trl_reference import trl_compute_loss, trl_config, trl_trainer
from tests.agents.support import ENV_KWARGS, AnswerLengthBonus, make_config, params, train_help

# the options named as TRL names them, with TRL's defaults
TRL_OPTIONS = (
    "use_adaptive_entropy",
    "entropy_coef_min",
    "entropy_coef_max",
    "entropy_coef_delta",
    "entropy_target",
)
ADAPTIVE = {"use_adaptive_entropy": True, "entropy_coef": 0.02, "entropy_coef_delta": 0.01}
STEPS = 6
HALVES = (torch.arange(0, 3), torch.arange(3, 6))  # two micro-batches of three completions


def _step_entropies(step: int, entropies: torch.Tensor) -> torch.Tensor:
    """Entropies around the target 1.0: low (about 0.3) on even steps, high (about 1.8) on odd ones, so the
    coefficient goes up and down and the bonus switches on and off."""
    return entropies / 3 * 0.6 + (0.0 if step % 2 == 0 else 1.5)


@pytest.mark.parametrize("top_entropy_quantile", [1.0, 0.5])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_the_coefficients_path_losses_and_gradients_are_trls(loss_type, top_entropy_quantile):
    options = {
        **ADAPTIVE,
        "loss_type": loss_type,
        "entropy_target": 1.0,
        "top_entropy_quantile": top_entropy_quantile,
    }
    config = GRPOConfig(max_new_tokens=6, beta=0.0, **options)
    agent = GRPOAgent.__new__(GRPOAgent)  # the agent's loss and controller, without a model
    agent.config, agent.parallel = config, Parallel.single()
    theirs = trl_trainer(accumulation_steps=len(HALVES), max_completion_length=6, beta=0.0, **options)
    worst = dict.fromkeys(("loss", "grad logp", "grad entropy", "coef"), 0.0)
    path, applied = [], []
    for step in range(STEPS):
        logp, old, _, entropies, adv, mask = _batch(step)
        entropies = _step_entropies(step, entropies) * mask
        for k, idx in enumerate(HALVES):
            x, h = logp[idx].clone().requires_grad_(True), entropies[idx].clone().requires_grad_(True)
            agent._entropies = h
            applied.append(agent.entropy_controller().applied())
            loss, _ = agent.loss(x, adv[idx], mask[idx], old[idx], None)
            (loss / len(HALVES)).backward()  # equal micro-batches: each weighs 1/2 (answers' share)
            y, g = logp[idx].clone().requires_grad_(True), entropies[idx].clone().requires_grad_(True)
            theirs.accelerator.sync_gradients = k == len(HALVES) - 1
            trl_loss, _ = trl_compute_loss(y, old[idx], adv[idx], mask[idx], None, g, trainer=theirs)
            trl_loss.backward()
            worst["loss"] = max(
                worst["loss"], abs(float(loss.detach()) / len(HALVES) - float(trl_loss.detach()))
            )
            worst["grad logp"] = max(worst["grad logp"], float((x.grad - y.grad).abs().max()))
            # a bonus not applied (coefficient 0) leaves our entropies without a gradient, TRL's with zeros
            h_grad = torch.zeros_like(h) if h.grad is None else h.grad
            worst["grad entropy"] = max(worst["grad entropy"], float((h_grad - g.grad).abs().max()))
        agent.entropy_controller().step()  # what clip_and_step does after the optimiser step
        path.append(agent.entropy_controller().coef)
        worst["coef"] = max(worst["coef"], abs(path[-1] - theirs.entropy_coef))
        assert agent.entropy_controller().last_entropy == pytest.approx(theirs._last_world_entropy, abs=1e-6)
    print(
        f"\nPARITY use_adaptive_entropy {loss_type} top_entropy_quantile={top_entropy_quantile}: max |diff| "
        + " ".join(f"{k} {v:.3g}" for k, v in worst.items())
        + f" (coefficients {[round(c, 3) for c in path]})"
    )
    assert max(worst.values()) <= 1e-6, worst
    assert applied[:2] == [0.0, 0.0] and any(a > 0 for a in applied)  # none before a measure; then it acts
    moves = [b - a for a, b in zip([ADAPTIVE["entropy_coef"], *path], path)]
    assert max(moves) > 0 > min(moves)  # the coefficient went up and down


def test_the_controller_by_hand():
    c = AdaptiveEntropy(coef=0.1, target=1.0, delta=0.05, minimum=0.0, maximum=0.2)
    assert c.applied() == 0.0  # nothing measured yet
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    for entropies, coef, applied in [([0.5, 0.9, 9.0], 0.15, 0.15), ([0.5, 0.5, 0.0], 0.2, 0.2),
                                     ([0.5, 0.5, 0.0], 0.2, 0.2), ([2.0, 3.0, 0.0], 0.15, 0.0)]:  # fmt: skip
        c.observe(torch.tensor([entropies]), mask)
        c.step()
        assert (c.coef, c.applied()) == pytest.approx((coef, applied))  # capped at 0.2; above target: off
    c.observe(torch.tensor([[0.1, 0.1, 0.0]]), mask)
    c.observe(torch.tensor([[5.0, 5.0, 0.0]]), mask)  # two micro-batches: one mean of 2.55 > 1
    c.step()
    assert c.last_entropy == pytest.approx(2.55) and c.coef == pytest.approx(0.1)
    c.step()  # no micro-batch since: nothing moves
    assert c.coef == pytest.approx(0.1)


def test_state_round_trip():
    c = AdaptiveEntropy(coef=0.3, target=1.0, delta=0.05, minimum=0.0, maximum=1.0)
    fresh = AdaptiveEntropy(coef=0.0, target=1.0, delta=0.05, minimum=0.0, maximum=1.0)
    fresh.load_state_dict(c.state_dict())
    assert fresh.coef == 0.3 and math.isinf(fresh.last_entropy) and c.state_dict()["last_entropy"] is None
    c.last_entropy = 0.7
    fresh.load_state_dict(c.state_dict())
    assert fresh.last_entropy == 0.7


def _config(model, out):
    return make_config(
        "grpo", model, out, total_steps=4, save_every=2, beta=0.0, use_adaptive_entropy=True,
        entropy_coef=0.05, entropy_coef_delta=0.02, entropy_target=100.0,
    )  # fmt: skip


def test_a_resumed_run_keeps_the_coefficient(tiny_model_dir, tmp_path):
    """The tiny model's entropy (~6 nats) is under the target 100: the coefficient climbs 0.02 a step and the
    bonus acts from step 2; stopped after step 2 and resumed, the run ends bit for bit as an uninterrupted one."""

    def env():
        return AnswerLengthBonus(gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS))

    straight = []
    train(_config(tiny_model_dir, tmp_path / "a"), progress=False, env=env(), history=straight)
    assert [row["train/entropy_coef"] for row in straight] == pytest.approx([0.07, 0.09, 0.11, 0.13])
    assert "train/policy_loss" not in straight[0] and "train/policy_loss" in straight[1]
    train(_config(tiny_model_dir, tmp_path / "b"), progress=False, env=env(), stop_at=2)
    halfway = read_state(latest_checkpoint(tmp_path / "b" / "run"))["agent"]["adaptive_entropy"]
    assert halfway["coef"] == pytest.approx(0.09) and 0 < halfway["last_entropy"] < 100
    resumed = []
    train(_config(tiny_model_dir, tmp_path / "b"), resume=str(tmp_path / "b" / "run"), progress=False, env=env(),
          history=resumed)  # fmt: skip
    assert [row["train/entropy_coef"] for row in resumed] == [
        row["train/entropy_coef"] for row in straight[2:]
    ]
    ends = [latest_checkpoint(tmp_path / run / "run") for run in ("a", "b")]
    pa, pb = (params(QwenVLPolicy.from_pretrained(str(end / "policy")).model) for end in ends)
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_defaults_are_trls():
    ours, theirs = GRPOConfig(), trl_config()
    for name in TRL_OPTIONS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert GRPOConfig(use_adaptive_entropy=True).needs_entropies
    with pytest.raises(SetupError, match="entropy_coef_min"):
        GRPOConfig(use_adaptive_entropy=True, entropy_coef_min=0.5, entropy_coef_max=0.1)


def test_train_help_names_the_trl_options():
    flat = train_help()
    for name in TRL_OPTIONS:
        assert f"--{name.replace('_', '-')}" in flat and f"TRL's {name}" in flat, name
