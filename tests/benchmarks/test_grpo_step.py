"""benchmarks/grpo_step.py's rollout-engine figures: the bandwidth fraction, and its per-engine step timing."""

import argparse

import pytest
import torch

from benchmarks.grpo_step import (
    bandwidth_fraction,
    decode_bytes_per_step,
    engine_list,
    engine_steps,
    gpu_bandwidth_gbs,
    image_side,
    make_agent,
    make_observations,
)


@pytest.fixture(scope="module")
def policy(tiny_model_dir, one_torch_thread):
    from agents.policies.qwen_vl import QwenVLPolicy

    return QwenVLPolicy.from_pretrained(tiny_model_dir, dtype="float32")


@pytest.mark.parametrize(
    "name, bandwidth",
    [
        ("NVIDIA H100 80GB HBM3", 3350.0),
        ("NVIDIA H100 PCIe", 2000.0),
        ("NVIDIA H200", 4800.0),
        ("NVIDIA A100-SXM4-80GB", 2039.0),
        ("NVIDIA A100-SXM4-40GB", 1555.0),
        ("NVIDIA L4", 300.0),
        ("NVIDIA L40S", 864.0),
        ("Some Future GPU", None),
    ],
)
def test_gpu_bandwidth_comes_from_the_device_name(name, bandwidth):
    assert gpu_bandwidth_gbs(name) == bandwidth


def test_bandwidth_fraction_is_bytes_over_time_over_bandwidth():
    # 4.4 GB read 64 times in 0.2 s is 1408 GB/s: 42% of an H100's 3350 GB/s
    assert bandwidth_fraction(4_400_000_000, 64, 0.2, 3350.0) == pytest.approx(1408 / 3350)


def test_decode_reads_the_layers_and_the_head_once_not_the_embedding(policy):
    model = policy.model
    language_model = model.model.language_model
    layers = sum(p.numel() for p in language_model.layers.parameters()) + language_model.norm.weight.numel()
    head = model.lm_head.weight.numel()
    assert decode_bytes_per_step(model) == 4 * (layers + head)  # float32
    assert decode_bytes_per_step(model) < 4 * sum(p.numel() for p in model.parameters())  # no vision tower


def test_engine_list_names_what_it_refuses():
    assert engine_list("transformers, fast") == ["transformers", "fast"]
    with pytest.raises(argparse.ArgumentTypeError, match="sglang unknown"):
        engine_list("fast,sglang")
    with pytest.raises(argparse.ArgumentTypeError, match="--engines"):
        engine_list(",")


def test_every_engine_is_timed_from_the_same_weights_and_draws_the_same_tokens(policy, tiny_model_dir):
    args = argparse.Namespace(
        engines=["transformers", "fast", "vllm"], repeats=2, group_size=2, batch=2, max_new_tokens=3
    )
    observations = make_observations(args.batch, image_side(60))
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    agent = make_agent(policy, tiny_model_dir, args)
    own_engine = agent.engine
    results = engine_steps(policy, agent, observations, args)
    assert agent.engine is own_engine
    assert results["transformers"]["same_tokens"] and results["fast"]["same_tokens"]
    assert "vllm" in results["vllm"]["failed"]  # not installed here: said, not raised
    for name in ("transformers", "fast"):
        assert results[name]["generate"] > 0 and results[name]["total"] >= results[name]["generate"]
        assert results[name]["prefill"] > 0  # the engines' common part, timed between their steps
        assert name in results[name]["engine"]
    after = policy.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the steps' updates were undone


def test_our_step_times_the_agents_own_update(policy, tiny_model_dir, monkeypatch):
    """The published step is the one users run: Agent.update itself, whose phases add up to the update."""
    from agents.base import Agent
    from benchmarks.grpo_step import our_step

    args = argparse.Namespace(group_size=2, batch=2, max_new_tokens=3)
    agent = make_agent(policy, tiny_model_dir, args)
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    updates = []
    real_update = Agent.update

    def counted(self, batch):
        updates.append(batch.rewards.shape)
        return real_update(self, batch)

    monkeypatch.setattr(type(agent), "update", counted)
    try:
        out = our_step(policy, agent, make_observations(args.batch, image_side(60)), step=0)
    finally:
        policy.model.load_state_dict(before)  # the module's policy is shared with the other tests
    assert updates == [(2, 2)]  # one update of B x G rewards
    assert "logprobs" not in vars(agent) and "clip_and_step" not in vars(agent)  # the clocks taken off again
    phases = ("generate", "score", "logprob_forward", "backward", "optimizer")
    assert all(out[name] >= 0 for name in phases) and out["logprob_forward"] > 0 and out["optimizer"] > 0
    assert out["total"] == pytest.approx(sum(out[name] for name in phases))
