"""QwenVLPolicy: sampling (shapes, determinism, no vision tokens), completion log-probs (exact, grads)."""

from __future__ import annotations

import pytest
import torch

from agents.policies.qwen_vl import VISION_SPECIAL_TOKENS, QwenVLPolicy, count_parameters
from agents.rollout import Rollout

G = 4


@pytest.fixture()
def rollout(policy, observations):
    return policy.generate(observations, num_samples=G, max_new_tokens=12, generator_seed=0)


def _bias_logits(model, token_ids, amount):
    """Add ``amount`` to the logits of ``token_ids`` through a hook on lm_head (returns the handle)."""

    def hook(module, inputs, output):
        output = output.clone()
        output[..., token_ids] += amount
        return output

    return model.lm_head.register_forward_hook(hook)


def _reference_logprobs(policy, rollout, n):
    """Log-probs of completion n computed the plain way: one unpadded sequence, pixel_values passed in."""
    o = int(rollout.obs_index[n])
    length = int(rollout.completion_mask[n].sum())
    real = rollout.prompt_mask[o].bool()
    prompt = rollout.prompt_ids[o][real]
    ids = torch.cat([prompt, rollout.completion_ids[n, :length]])[None]
    mm = torch.cat([rollout.prompt_mm_token_type_ids[o][real], torch.zeros(length, dtype=torch.long)])[None]
    one = rollout.select_observations([o])
    logits = policy.model(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        mm_token_type_ids=mm,
        pixel_values=one.pixel_values,
        image_grid_thw=one.image_grid_thw,
    ).logits[0]
    p = prompt.numel()
    return logits[p - 1 : p + length - 1].log_softmax(-1).gather(-1, ids[0, p:, None])[:, 0]


# --------------------------------------------------------------------------------------------------
# prompts


def test_encode_prompts_left_pads(policy, observations):
    inputs = policy.encode_prompts(observations)
    assert set(inputs) == {
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "pixel_values",
        "image_grid_thw",
    }
    mask = inputs["attention_mask"]
    assert mask[:, -1].all()  # left padding: every row ends with a real token
    assert (mask[1] == 0).any()  # the shorter prompt is padded
    assert (inputs["input_ids"][mask == 0] == policy.pad_token_id).all()
    image_id = policy.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(inputs["mm_token_type_ids"].bool(), inputs["input_ids"] == image_id)
    assert inputs["pixel_values"].shape[0] == int(inputs["image_grid_thw"].prod(-1).sum())
    # the assistant header ends every row
    header = policy.tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert inputs["input_ids"][:, -len(header) :].tolist() == [header] * len(observations)


# --------------------------------------------------------------------------------------------------
# sampling


def test_generate_shapes_and_order(policy, observations, rollout):
    assert isinstance(rollout, Rollout)
    n = len(observations) * G
    assert len(rollout.texts) == n == rollout.num_completions
    assert rollout.completion_ids.shape == rollout.completion_mask.shape
    assert rollout.completion_ids.shape[0] == n and rollout.completion_ids.shape[1] <= 12
    assert rollout.obs_index.tolist() == [0] * G + [1] * G
    assert rollout.num_observations == len(observations) and rollout.num_samples == G
    assert rollout.prompt_ids.shape[0] == len(observations)
    # mask is a prefix of ones; padding is the pad id
    lengths = rollout.completion_mask.sum(1)
    assert (lengths >= 1).all()
    for row, length in zip(rollout.completion_mask, lengths.tolist()):
        assert row[:length].all() and not row[length:].any()
    assert (rollout.completion_ids[rollout.completion_mask == 0] == policy.pad_token_id).all()


def test_generate_is_deterministic_under_a_seed(policy, observations, rollout):
    state = torch.get_rng_state()
    again = policy.generate(observations, num_samples=G, max_new_tokens=12, generator_seed=0)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG was not touched
    assert again.texts == rollout.texts
    assert torch.equal(again.completion_ids, rollout.completion_ids)
    other = policy.generate(observations, num_samples=G, max_new_tokens=12, generator_seed=1)
    assert other.texts != rollout.texts
    # samples within a group differ (a random tiny model is close to uniform over ~650 tokens)
    assert len(set(rollout.texts[:G])) > 1


def test_generate_respects_max_new_tokens(policy, observations):
    out = policy.generate(observations, num_samples=2, max_new_tokens=3, generator_seed=0)
    assert out.completion_ids.shape[1] <= 3


def test_vision_tokens_are_never_sampled(policy, observations):
    vision_ids = [policy.tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS]
    handle = _bias_logits(policy.model, vision_ids, 1e4)  # vision tokens would be the argmax everywhere
    try:
        for kwargs in ({"do_sample": True, "generator_seed": 0}, {"do_sample": False}):
            out = policy.generate(observations, num_samples=G, max_new_tokens=8, **kwargs)
            assert not torch.isin(out.completion_ids, torch.tensor(vision_ids)).any()
            assert not any(tok in text for text in out.texts for tok in VISION_SPECIAL_TOKENS)
            policy.completion_logprobs(out)  # the training forward still runs
    finally:
        handle.remove()


def test_stop_token_ends_the_answer_and_is_masked_in(policy, observations):
    im_end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    handle = _bias_logits(policy.model, [im_end], 1e4)
    try:
        out = policy.generate(observations, num_samples=2, max_new_tokens=8, generator_seed=0)
    finally:
        handle.remove()
    assert out.completion_ids.shape[1] == 1
    assert (out.completion_ids[:, 0] == im_end).all() and out.completion_mask.all()
    assert out.texts == [""] * 4


def test_texts_keep_answer_format_special_tokens(policy, observations):
    tok = policy.tokenizer
    answer = "<|object_ref_start|>circle<|object_ref_end|><|box_start|>(12,34),(56,78)<|box_end|>"
    ids = tok.encode(answer, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    width = len(ids) + 2
    row = torch.tensor(ids + [policy.pad_token_id] * 2)
    mask = torch.tensor([1] * len(ids) + [0, 0])
    assert policy.decode_completions(row[None], mask[None]) == [answer]
    assert row.shape[0] == width


# --------------------------------------------------------------------------------------------------
# log-probs


def test_logprobs_match_per_sequence_computation(policy, rollout):
    for share_vision in (True, False):
        logprobs = policy.completion_logprobs(rollout, share_vision=share_vision)
        assert logprobs.shape == rollout.completion_ids.shape
        for n in range(rollout.num_completions):
            length = int(rollout.completion_mask[n].sum())
            with torch.no_grad():
                expected = _reference_logprobs(policy, rollout, n)
            torch.testing.assert_close(logprobs[n, :length].detach(), expected, atol=1e-4, rtol=0)
            assert (logprobs[n, length:] == 0).all()


def test_logprobs_same_alone_and_batched_with_padding(policy, rollout):
    with torch.no_grad():
        batched = policy.completion_logprobs(rollout)
        for o in range(rollout.num_observations):
            alone = policy.completion_logprobs(rollout.select_observations([o]))
            rows = (rollout.obs_index == o).nonzero().flatten()
            torch.testing.assert_close(batched[rows], alone, atol=1e-4, rtol=0)


def test_logprobs_agree_with_generation_logits(policy, observations):
    """Positions used while sampling (KV cache, rope deltas) equal those used to score: same log-probs."""
    inputs = policy.encode_prompts(observations)
    out = policy.model.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=6,
        min_new_tokens=6,
        suppress_tokens=policy.vision_token_ids,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=policy.pad_token_id,
    )
    generated = out.sequences[:, inputs["input_ids"].shape[1] :]
    step_logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
    expected = step_logprobs.gather(-1, generated[..., None])[..., 0]
    rollout = Rollout(
        prompt_ids=inputs["input_ids"],
        prompt_mask=inputs["attention_mask"],
        prompt_mm_token_type_ids=inputs["mm_token_type_ids"],
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        completion_ids=generated,
        completion_mask=torch.ones_like(generated),
        obs_index=torch.arange(len(observations)),
        texts=[""] * len(observations),
        num_samples=1,
    )
    with torch.no_grad():
        logprobs = policy.completion_logprobs(rollout)
    torch.testing.assert_close(logprobs, expected, atol=1e-4, rtol=0)


def test_logprobs_are_nonpositive_and_differentiable(policy, rollout):
    policy.model.zero_grad(set_to_none=True)
    logprobs = policy.completion_logprobs(rollout)
    assert logprobs.requires_grad
    assert (logprobs <= 0).all()
    (logprobs.sum() / rollout.completion_mask.sum()).backward()
    grads = {name: p.grad for name, p in policy.model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["lm_head.weight"].abs().sum() > 0
    assert any(g.abs().sum() > 0 for name, g in grads.items() if ".visual." in name)
    policy.model.zero_grad(set_to_none=True)


def test_logprobs_under_another_model_and_from_a_mapping(policy, rollout, tiny_model_dirs, arch):
    reference = QwenVLPolicy.from_pretrained(tiny_model_dirs[arch]).model  # a frozen copy of the same weights
    reference.requires_grad_(False)
    as_mapping = {k: getattr(rollout, k) for k in rollout.__dataclass_fields__}
    with torch.no_grad():
        ours = policy.completion_logprobs(rollout)
        theirs = policy.completion_logprobs(as_mapping, model=reference)
        hotter = policy.completion_logprobs(rollout, temperature=2.0)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert not torch.allclose(ours, hotter)


def test_save_and_reload_policy(policy, tmp_path, observations):
    out = policy.save_pretrained(tmp_path / "ckpt")
    again = QwenVLPolicy.from_pretrained(out)
    assert count_parameters(again.model) == policy.num_parameters()
    inputs = policy.encode_prompts(observations)
    with torch.no_grad():
        assert torch.equal(again.model(**inputs).logits, policy.model(**inputs).logits)


def test_bfloat16_policy_runs(tiny_model_dirs, observations):
    policy = QwenVLPolicy.from_pretrained(tiny_model_dirs["qwen2-vl"], dtype="bfloat16")
    assert policy.model.dtype == torch.bfloat16
    out = policy.generate(observations, num_samples=2, max_new_tokens=4, generator_seed=0)
    with torch.no_grad():
        logprobs = policy.completion_logprobs(out)
    assert logprobs.dtype == torch.float32 and (logprobs <= 0).all()


def test_select_micro_batches_reproduce_the_full_batch(policy, rollout):
    with torch.no_grad():
        full = policy.completion_logprobs(rollout)
        # chunks that cut through groups, as a micro-batched trainer would take them
        parts = [
            policy.completion_logprobs(rollout.select(torch.arange(i, min(i + 3, 2 * G)))) for i in (0, 3, 6)
        ]
    torch.testing.assert_close(torch.cat(parts), full, atol=1e-4, rtol=0)
    sub = rollout.select([G + 1, 0])
    assert sub.obs_index.tolist() == [1, 0] and sub.texts == [rollout.texts[G + 1], rollout.texts[0]]
    assert sub.completion_ids.shape[1] == rollout.completion_ids.shape[1]


def test_teacher_forcing_scores_given_answers_and_learns_them(tiny_model_dirs, arch, observations):
    policy = QwenVLPolicy.from_pretrained(tiny_model_dirs[arch])  # a private copy: this test trains it
    boxes = ["3", "<|object_ref_start|>circle<|object_ref_end|><|box_start|>(12,34),(56,78)<|box_end|>"]
    forced = policy.teacher_forcing(observations, boxes)
    assert policy.decode_completions(forced.completion_ids, forced.completion_mask) == boxes
    im_end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert forced.completion_ids[0, :2].tolist() == [policy.tokenizer.convert_tokens_to_ids("3"), im_end]
    assert forced.completion_mask[0].tolist() == [1, 1] + [0] * (forced.completion_ids.shape[1] - 2)

    # a tiny model learns to tell two prompts apart and answer a digit for each, in a few steps
    answers = ["3", "7"]
    forced = policy.teacher_forcing(observations, answers)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-2)
    policy.model.train()
    losses = []
    for _ in range(30):
        logp = policy.completion_logprobs(forced)
        loss = -(logp.sum() / forced.completion_mask.sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    greedy = policy.generate(observations, num_samples=2, max_new_tokens=4, do_sample=False)
    assert greedy.texts == ["3", "3", "7", "7"]


def test_an_old_transformers_is_refused_with_the_reason(monkeypatch):
    import agents.policies as policies

    monkeypatch.setattr(policies, "_version", lambda name: "5.17.0")
    with pytest.raises(ImportError, match=r"transformers >= 5\.18 \(installed: 5\.17\.0\).*image"):
        policies._check_transformers()
