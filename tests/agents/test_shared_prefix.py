"""Shared-prefix training forward and prefill-once sampling: the per-sequence paths' numbers, less work."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GenerationConfig

from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.shared_prefix import supports_shared_prefix, token_logprobs
from agents.rollout import Rollout

G = 3


def _rollout(policy, observations, lengths, seed=0):
    """G completions per observation with the given lengths (random non-vision tokens, right-padded)."""
    inputs = policy.encode_prompts(observations)
    g = len(lengths) // len(observations)
    width = max(lengths)
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.tensor(
        [i for i in range(len(policy.tokenizer)) if i not in policy.vision_token_ids + [policy.pad_token_id]]
    )
    ids = allowed[torch.randint(len(allowed), (len(lengths), width), generator=gen)]
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, policy.pad_token_id))
    return Rollout(
        prompt_ids=inputs["input_ids"],
        prompt_mask=inputs["attention_mask"],
        prompt_mm_token_type_ids=inputs["mm_token_type_ids"],
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        completion_ids=ids,
        completion_mask=mask,
        obs_index=torch.arange(len(observations)).repeat_interleave(g),
        texts=[""] * len(lengths),
        num_samples=g,
    )


def _logprobs_and_grads(policy, rollout, shared_prefix, weights):
    policy.model.zero_grad(set_to_none=True)
    logp = policy.completion_logprobs(rollout, shared_prefix=shared_prefix)
    (logp * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in policy.model.named_parameters() if p.grad is not None}
    policy.model.zero_grad(set_to_none=True)
    return logp.detach(), grads


def _assert_same(policy, rollout):
    assert supports_shared_prefix(policy.model)
    weights = torch.randn(rollout.completion_ids.shape, generator=torch.Generator().manual_seed(1))
    shared, shared_grads = _logprobs_and_grads(policy, rollout, True, weights)
    plain, plain_grads = _logprobs_and_grads(policy, rollout, False, weights)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    assert (shared[rollout.completion_mask == 0] == 0).all()
    assert shared_grads.keys() == plain_grads.keys() and len(plain_grads) == len(
        list(policy.model.parameters())
    )
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert any(".visual." in name and g.abs().sum() > 0 for name, g in shared_grads.items())


# --------------------------------------------------------------------------------------------------
# training forward


def test_shared_prefix_matches_per_sequence_with_padding(policy, observations):
    # prompts of different lengths (left padding) and answers of different lengths (right padding)
    rollout = _rollout(policy, observations, [5, 1, 3, 4, 5, 2])
    assert (rollout.prompt_mask == 0).any()
    _assert_same(policy, rollout)


def test_shared_prefix_matches_per_sequence_without_padding(policy, observations):
    rollout = _rollout(policy, observations[:1], [4] * G)
    assert rollout.prompt_mask.all() and rollout.completion_mask.all()
    _assert_same(policy, rollout)


def test_shared_prefix_with_cut_groups_and_one_token_answers(policy, observations):
    rollout = _rollout(policy, observations, [5, 1, 3, 4, 5, 2])
    _assert_same(policy, rollout.select([4, 0, 2]))  # groups of 2 and 1, out of order
    _assert_same(policy, _rollout(policy, observations, [1] * (2 * G)))  # nothing fed after the prompt


def test_shared_prefix_with_eager_attention_and_temperature(tiny_model_dirs, observations):
    policy = QwenVLPolicy.from_pretrained(tiny_model_dirs["qwen2-vl"], attn_implementation="eager")
    rollout = _rollout(policy, observations, [5, 1, 3, 4, 5, 2])
    _assert_same(policy, rollout)
    with torch.no_grad():
        hot = [policy.completion_logprobs(rollout, temperature=1.7, shared_prefix=s) for s in (True, False)]
    torch.testing.assert_close(hot[0], hot[1], atol=1e-5, rtol=0)


def test_shared_prefix_runs_the_prompt_once(policy, observations):
    rollout = _rollout(policy, observations, [5, 1, 3, 4, 5, 2])
    tokens = {"decoder": 0, "vision": 0}

    def count(key):
        def hook(module, args, kwargs):
            x = kwargs.get("inputs_embeds") if key == "decoder" else args[0]
            tokens[key] += x.shape[0] * x.shape[1] if key == "decoder" else x.shape[0]

        return hook

    handles = [
        policy.model.model.language_model.register_forward_pre_hook(count("decoder"), with_kwargs=True),
        policy.model.model.visual.register_forward_pre_hook(count("vision"), with_kwargs=True),
    ]
    try:
        with torch.no_grad():
            policy.completion_logprobs(rollout, shared_prefix=True)
    finally:
        for handle in handles:
            handle.remove()
    num_obs, prompt_len = rollout.prompt_ids.shape
    assert tokens["vision"] == rollout.pixel_values.shape[0]  # each image once
    assert tokens["decoder"] == num_obs * prompt_len + num_obs * G * (rollout.completion_ids.shape[1] - 1)


@pytest.mark.parametrize("checkpointing", [True, "vision"])
@pytest.mark.parametrize("shared", [True, False])
def test_activation_checkpointing_matches(checkpointing, shared, tiny_model_dirs, observations):
    """Vision tower or every layer recomputed in backward, shared prefix or not: the same values and grads."""
    policy = QwenVLPolicy.from_pretrained(tiny_model_dirs["qwen2.5-vl"])
    rollout = _rollout(policy, observations, [5, 1, 3, 4, 5, 2])
    weights = torch.randn(rollout.completion_ids.shape, generator=torch.Generator().manual_seed(1))
    policy.model.train()
    plain, plain_grads = _logprobs_and_grads(policy, rollout, True, weights)
    policy = QwenVLPolicy.from_pretrained(
        tiny_model_dirs["qwen2.5-vl"], activation_checkpointing=checkpointing
    )
    policy.model.train()
    assert supports_shared_prefix(policy.model) and policy.checkpoint_decoder == (checkpointing is True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in policy.model.model.visual.modules())
    recomputed = []
    if checkpointing is True:  # the decoder layers really run again in backward
        layer = policy.model.model.language_model.layers[0]
        layer.mlp.register_forward_pre_hook(lambda m, a: recomputed.append(torch.is_grad_enabled()))
    ckpt, ckpt_grads = _logprobs_and_grads(policy, rollout, shared, weights)
    if checkpointing is True:
        assert len(recomputed) == (
            4 if shared else 2
        )  # (prompt + answer pass if shared) x (forward, backward)
        assert "forward" not in vars(layer)  # the wrapper is gone after the call
    torch.testing.assert_close(ckpt, plain, atol=1e-5, rtol=0)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_autocast_option_runs(tiny_model_dirs, observations):
    base = QwenVLPolicy.from_pretrained(tiny_model_dirs["qwen2-vl"])
    policy = QwenVLPolicy(base.model, base.processor, autocast_dtype="bf16")
    rollout = _rollout(policy, observations, [5, 1, 3, 4, 5, 2])
    logp = policy.completion_logprobs(rollout)
    assert logp.dtype == torch.float32 and (logp <= 0).all()
    with torch.no_grad():
        exact = base.completion_logprobs(rollout)
    torch.testing.assert_close(logp.detach(), exact, atol=0.1, rtol=0)  # bf16 rounding only


def test_chunked_token_logprobs_equal_log_softmax():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    ids = torch.randint(50, (3, 7))
    expected = (head(hidden) / 0.7).log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    (g_expected,) = torch.autograd.grad(expected.sum(), hidden)
    for chunk in (50, 50 * 4, 10_000):  # one token per chunk (checkpointed), 4 tokens, all at once
        got = token_logprobs(hidden, ids, head, temperature=0.7, chunk_elements=chunk)
        (g_got,) = torch.autograd.grad(got.sum(), hidden)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(g_got, g_expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# sampling


def test_prefill_once_samples_like_num_return_sequences(policy, observations):
    plain = copy.copy(policy)
    plain.prefill_once = False
    for seed in (0, 1):
        ours = policy.generate(observations, num_samples=G, max_new_tokens=10, generator_seed=seed)
        theirs = plain.generate(observations, num_samples=G, max_new_tokens=10, generator_seed=seed)
        assert ours.texts == theirs.texts
        assert torch.equal(ours.completion_ids, theirs.completion_ids)
    # the per-step logits agree; transformers 5.23 already encodes each image once (it expands the
    # encoded features), but prefills G copies of each prompt: we prefill one
    config = GenerationConfig(
        do_sample=True, num_return_sequences=G, max_new_tokens=6, min_new_tokens=6,
        suppress_tokens=policy.vision_token_ids, pad_token_id=policy.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    inputs = policy.encode_prompts(observations)
    num_obs, prompt_len = inputs["input_ids"].shape
    calls = {"vision": [], "decoder": []}
    handles = [
        policy.model.model.visual.register_forward_pre_hook(
            lambda m, a: calls["vision"].append(a[0].shape[0])
        ),
        policy.model.model.language_model.register_forward_pre_hook(
            lambda m, a, kw: calls["decoder"].append(tuple(kw["inputs_embeds"].shape[:2])), with_kwargs=True
        ),
    ]
    try:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            once = policy._generate_prefill_once(inputs, G, config)
            assert calls["vision"] == [inputs["pixel_values"].shape[0]]
            assert calls["decoder"][:2] == [(num_obs, prompt_len - 1), (num_obs * G, 1)]
            calls["vision"].clear(), calls["decoder"].clear()
            torch.manual_seed(0)
            reference = policy.model.generate(**inputs, generation_config=config)
            assert calls["vision"] == [inputs["pixel_values"].shape[0]]
            assert calls["decoder"][0] == (num_obs * G, prompt_len)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(once.sequences, reference.sequences)
    torch.testing.assert_close(torch.stack(once.logits), torch.stack(reference.logits), atol=1e-4, rtol=0)
