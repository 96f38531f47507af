"""Oracle answers survive the released tokenizers: encoded, decoded, they score exactly as the original.

Also: the box / ref / vision markers are single tokens with their released ids, and an answer given to
``QwenVLPolicy.teacher_forcing`` becomes exactly those tokens plus ``<|im_end|>`` and decodes back unchanged.
"""

from __future__ import annotations

import pytest

from tests.real_files.support import (
    IM_END_ID,
    MODELS,
    SPECIAL_IDS,
    env_format_cases,
    make_env,
    require_real_files,
)

require_real_files()

from perception_env.formats import BOX_END, BOX_START, REF_END, REF_START  # noqa: E402

CASES = env_format_cases()
INDICES = range(4)  # samples per (env, format)
MARKERS = (REF_START, REF_END, BOX_START, BOX_END)


def oracle_answers(env_id, fmt):
    """[(env, index, oracle answer, its reward)] for the first samples of the env."""
    env = make_env(env_id, fmt)
    out = []
    for index in INDICES:
        env.reset(options={"index": index})
        answer = env.unwrapped.oracle_answer()
        _, reward, *_ = env.step(answer)
        out.append((index, answer, reward))
    return env, out


@pytest.mark.parametrize("name", MODELS)
def test_special_tokens_are_single_tokens_with_released_ids(name, real_tokenizers):
    """Each marker encodes to one token, its released id, and decodes back to itself."""
    tokenizer = real_tokenizers[name]
    assert REF_START == "<|object_ref_start|>" and BOX_START == "<|box_start|>"
    for token, token_id in SPECIAL_IDS.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
        assert tokenizer.decode([token_id], skip_special_tokens=False) == token
    # next to digits and brackets, as in an answer, a marker is still its own token
    ids = tokenizer.encode("<|box_start|>(1,2),(3,4)<|box_end|>", add_special_tokens=False)
    assert ids[0] == SPECIAL_IDS[BOX_START] and ids[-1] == SPECIAL_IDS[BOX_END]
    assert tokenizer.encode("Hello, world!", add_special_tokens=False) == [9707, 11, 1879, 0]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("env_id,fmt", CASES)
def test_oracle_answers_round_trip_through_tokenizer(name, env_id, fmt, real_tokenizers):
    """decode(encode(oracle)) is the oracle string, scores the same reward, and keeps every marker whole."""
    tokenizer = real_tokenizers[name]
    marker_ids = {SPECIAL_IDS[m] for m in MARKERS}
    env, answers = oracle_answers(env_id, fmt)
    for index, answer, reward in answers:
        assert reward > 0, (index, answer)
        ids = tokenizer.encode(answer, add_special_tokens=False)
        decoded = tokenizer.decode(ids, skip_special_tokens=False)
        env.reset(options={"index": index})
        _, decoded_reward, *_ = env.step(decoded)
        assert decoded_reward == reward, (index, answer, decoded)
        assert decoded == answer
        for marker in MARKERS:
            assert ids.count(SPECIAL_IDS[marker]) == answer.count(marker), (marker, answer)
        # no other token carries a piece of a marker
        for i in ids:
            if i not in marker_ids:
                assert "<|" not in tokenizer.decode([i]) and "|>" not in tokenizer.decode([i]), (i, answer)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("env_id,fmt", [c for c in CASES if c[1] in ("qwen2-vl", "qwen2.5-vl", "text")])
def test_teacher_forcing_tokens_are_the_released_encoding(
    name, env_id, fmt, prompt_policies, real_tokenizers
):
    """The policy's supervised completion is encode(oracle) + <|im_end|>; its decoded text scores the same."""
    policy, tokenizer = prompt_policies[name], real_tokenizers[name]
    env, answers = oracle_answers(env_id, fmt)
    index, answer, reward = answers[0]
    observation, _ = env.reset(options={"index": index})
    rollout = policy.teacher_forcing([observation], [answer])
    expected = tokenizer.encode(answer, add_special_tokens=False) + [IM_END_ID]
    assert rollout.completion_ids[0].tolist() == expected
    assert rollout.completion_mask[0].tolist() == [1] * len(expected)
    (text,) = policy.decode_completions(rollout.completion_ids, rollout.completion_mask)
    assert text == answer
    _, decoded_reward, *_ = env.step(text)
    assert decoded_reward == reward
