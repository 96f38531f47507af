"""Periodic reference-model sync (TRL's ``sync_ref_model``, ``ref_model_mixup_alpha``, ``ref_model_sync_steps``)
against TRL 1.16's own ``SyncRefModelCallback``, and a resumed run keeping the moved reference."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch

from agents.checkpoints import latest_checkpoint, read_state
from agents.cli import train
from agents.config import SetupError
from agents.grpo.config import GRPOConfig
from agents.grpo.reference_sync import load_reference_state, mix_into_reference, reference_state
from agents.policies.qwen_vl import QwenVLPolicy
from tests.agents.grpo.trl_reference import trl_config
from tests.agents.support import ENV_KWARGS, AnswerLengthBonus, make_config, make_trainer, params, train_help

trl_callbacks = pytest.importorskip("trl.trainer.callbacks")


def _moved(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with every weight moved by noise: a policy some steps away from it."""
    g = torch.Generator().manual_seed(seed)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g).to(p.dtype))
    return moved


def test_the_mix_by_hand():
    reference, policy = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([[1.0, -2.0]]))
        policy.weight.copy_(torch.tensor([[3.0, 2.0]]))
    mix_into_reference(reference, policy, alpha=0.25)
    assert reference.weight.tolist() == [[1.5, -1.0]]  # 0.75 * ref + 0.25 * policy
    mix_into_reference(reference, policy, alpha=1.0)
    assert torch.equal(reference.weight, policy.weight)  # alpha 1: a copy


@pytest.mark.parametrize("alpha", [0.6, 0.05, 1.0])
def test_the_mix_is_trls_bit_for_bit(tiny_model_dir, alpha):
    """Ours and TRL's ``SyncRefModelCallback._sync_target_model`` on the same two tiny Qwen models, three
    syncs in a row (the policy moving in between)."""
    start = QwenVLPolicy.from_pretrained(tiny_model_dir).model
    ours, theirs = copy.deepcopy(start), copy.deepcopy(start)
    worst = 0.0
    for k in range(3):
        policy = _moved(start, seed=k)
        mix_into_reference(ours, policy, alpha)
        trl_callbacks.SyncRefModelCallback._sync_target_model(policy, theirs, alpha)
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            worst = max(worst, float((a - b).abs().max().detach()))
            assert torch.equal(a, b), name
    print(f"\nPARITY sync_ref_model alpha={alpha}: max |diff| of the reference weights {worst:.3g}")
    if alpha < 1:
        assert any(not torch.equal(a, b) for a, b in zip(ours.parameters(), start.parameters()))


def test_a_run_mixes_at_trls_steps(tiny_model_dir, tmp_path, monkeypatch):
    """Three rollout batches of two optimiser steps each (num_iterations 2), a sync every 4 optimiser steps:
    after each of our optimiser steps TRL's callback runs ``on_step_end`` at that ``global_step`` on a copy of
    the policy; at the end both references hold the same weights, bit for bit."""
    # accelerate's state, which the callback asks only whether DeepSpeed ZeRO-3 runs: one plain process
    monkeypatch.setattr(trl_callbacks, "AcceleratorState", lambda: SimpleNamespace(deepspeed_plugin=None))
    trainer = make_trainer(
        "grpo", tiny_model_dir, tmp_path, total_steps=3, num_iterations=2, sync_ref_model=True,
        ref_model_mixup_alpha=0.6, ref_model_sync_steps=4,
    )  # fmt: skip
    agent = trainer.agent
    start = params(agent.reference)
    theirs_reference, theirs_policy = copy.deepcopy(agent.reference), copy.deepcopy(agent.policy.model)
    callback = trl_callbacks.SyncRefModelCallback(ref_model=theirs_reference, accelerator=None)
    args = SimpleNamespace(ref_model_sync_steps=4, ref_model_mixup_alpha=0.6)
    steps = []

    def after_optimizer_step(optimizer, *_):
        steps.append(len(steps) + 1)
        theirs_policy.load_state_dict(agent.policy.model.state_dict())
        callback.on_step_end(args, SimpleNamespace(global_step=steps[-1]), None, model=theirs_policy)

    agent.optimizer.register_step_post_hook(after_optimizer_step)
    trainer.train()
    assert steps == [1, 2, 3, 4, 5, 6]
    moved = [name for name, p in agent.reference.named_parameters() if not torch.equal(p, start[name])]
    assert moved  # the sync at step 4 acted (none at 6: 6 % 4 != 0)
    for (name, ours), theirs in zip(agent.reference.named_parameters(), theirs_reference.parameters()):
        assert torch.equal(ours, theirs), name


def _config(model, out, **options):
    return make_config(
        "grpo", model, out, total_steps=4, save_every=2, sync_ref_model=True, ref_model_sync_steps=2,
        ref_model_mixup_alpha=0.6, **options,
    )  # fmt: skip


def test_resume_keeps_the_moved_reference_bit_identical(tiny_model_dir, tmp_path):
    """4 steps, the reference mixed after steps 2 and 4: straight, or stopped after step 2's checkpoint and
    resumed, the policy and the reference end the same, bit for bit; the checkpoint holds the moved reference
    (the starting model would make the resumed KL another one)."""

    def env():
        return AnswerLengthBonus(gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS))

    train(_config(tiny_model_dir, tmp_path / "a"), progress=False, env=env())
    train(_config(tiny_model_dir, tmp_path / "b"), progress=False, env=env(), stop_at=2)
    halfway = read_state(latest_checkpoint(tmp_path / "b" / "run"))
    start = QwenVLPolicy.from_pretrained(tiny_model_dir).model
    assert any(not torch.equal(v, start.get_parameter(k)) for k, v in halfway["agent"]["reference"].items())
    train(
        _config(tiny_model_dir, tmp_path / "b"), resume=str(tmp_path / "b" / "run"), progress=False, env=env()
    )
    ends = [latest_checkpoint(tmp_path / run / "run") for run in ("a", "b")]
    a, b = (read_state(end)["agent"]["reference"] for end in ends)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], halfway["agent"]["reference"][k]) for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    pa, pb = (params(QwenVLPolicy.from_pretrained(str(end / "policy")).model) for end in ends)
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_reference_state_round_trip_and_mismatch(tiny_model_dir):
    start = QwenVLPolicy.from_pretrained(tiny_model_dir).model
    moved = _moved(start, seed=5)
    target = copy.deepcopy(start)
    load_reference_state(target, {k: v.clone() for k, v in reference_state(moved).items()})
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), moved.parameters()))
    with pytest.raises(ValueError, match="does not fit"):
        load_reference_state(target, {"lm_head.weight": torch.zeros(1)})


def test_defaults_are_trls():
    ours, theirs = GRPOConfig(), trl_config()
    for name in ("sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps"):
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize(
    "options, message",
    [
        ({"beta": 0.0}, "beta 0 does not load"),
        ({"lora_r": 4}, "LoRA"),
        ({"ref_model_mixup_alpha": 1.5}, "ref_model_mixup_alpha"),
        ({"ref_model_sync_steps": 0}, "ref_model_sync_steps"),
    ],
)
def test_impossible_options_are_refused_with_a_reason(options, message):
    with pytest.raises(SetupError, match=message):
        GRPOConfig(sync_ref_model=True, **options)


def test_train_help_names_the_trl_options():
    """``perception-r1 train --help``, the installed command, as a user reads it."""
    flat = train_help()
    for text in (
        "--sync-ref-model", "--ref-model-mixup-alpha", "--ref-model-sync-steps", "TRL's sync_ref_model",
        "TRL's ref_model_mixup_alpha", "TRL's ref_model_sync_steps",
    ):  # fmt: skip
        assert text in flat, text
