"""Per-row seeded sampling: the right distribution, and each answer independent of its batch-mates."""

from __future__ import annotations

import pytest
import torch

from agents.policies.sampling import PerRowGumbelSampler, derive_seed, row_seeds

LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])


def _draw(rows: int, **warp) -> torch.Tensor:
    """One token for each of ``rows`` rows sharing LOGITS, each row with its own seed: [rows]."""
    sampler = PerRowGumbelSampler(range(rows), **warp)
    out = sampler(torch.zeros((rows, 1), dtype=torch.long), LOGITS.expand(rows, -1).clone())
    assert torch.all(torch.isneginf(out) | (out == 0)) and torch.all((out == 0).sum(1) == 1)
    return out.argmax(1)


def _frequencies(tokens: torch.Tensor) -> torch.Tensor:
    return torch.bincount(tokens, minlength=LOGITS.numel()).float() / tokens.numel()


def test_draws_follow_the_softmax_of_the_tempered_logits():
    n = 40_000  # binomial std of a frequency <= 0.0025: 0.012 is about 5 std
    for temperature in (1.0, 0.5):
        expected = torch.softmax(LOGITS / temperature, 0)
        torch.testing.assert_close(
            _frequencies(_draw(n, temperature=temperature)), expected, atol=0.012, rtol=0
        )


def test_top_k_and_top_p_never_sample_outside_their_set():
    assert set(_draw(5_000, top_k=2).tolist()) == {0, 1}
    # softmax(LOGITS) sorted: 0.52 (token 0), 0.19 (1), 0.12 (4), ...: top-p 0.6 keeps tokens 0 and 1
    kept = _frequencies(_draw(20_000, top_p=0.6))
    assert kept[[2, 3, 4]].sum() == 0
    renormalised = torch.softmax(LOGITS[:2], 0)
    torch.testing.assert_close(kept[:2], renormalised, atol=0.015, rtol=0)


def test_suppressed_tokens_are_never_chosen():
    scores = LOGITS.expand(2_000, -1).clone()
    scores[:, 0] = float("-inf")  # what transformers' SuppressTokensLogitsProcessor does before us
    out = PerRowGumbelSampler(range(2_000))(torch.zeros((2_000, 1), dtype=torch.long), scores)
    assert not torch.any(out.argmax(1) == 0)


def test_a_rows_draws_depend_only_on_its_seed():
    scores = torch.randn(3, 50)
    ids = torch.zeros((3, 1), dtype=torch.long)
    together = PerRowGumbelSampler([7, 8, 9])
    alone = PerRowGumbelSampler([8])
    for _ in range(5):  # successive tokens: the k-th draw of each row's own stream
        assert together(ids, scores)[1].argmax() == alone(ids[:1], scores[1:2])[0].argmax()


def test_seeds_are_stable_numbers():
    assert derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(1, 0)
    assert 0 <= derive_seed(2**70, -3) < 2**63
    assert row_seeds([5, 6], 2) == [
        derive_seed(5, 0),
        derive_seed(5, 1),
        derive_seed(6, 0),
        derive_seed(6, 1),
    ]


def test_rejects_a_seed_count_that_does_not_match_the_rows():
    with pytest.raises(ValueError, match="row seeds"):
        PerRowGumbelSampler([1, 2])(torch.zeros((3, 1), dtype=torch.long), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="temperature"):
        PerRowGumbelSampler([1], temperature=0)


def test_an_observations_answers_do_not_depend_on_its_batch(policy, observations):
    """What data-parallel ranks and a resume on another number of GPUs rely on."""
    seeds = [11, 22, 33][: len(observations)]
    batch = policy.generate(observations, num_samples=3, max_new_tokens=8, observation_seeds=seeds)
    for b, observation in enumerate(observations):
        alone = policy.generate([observation], num_samples=3, max_new_tokens=8, observation_seeds=[seeds[b]])
        assert alone.texts == batch.texts[3 * b : 3 * b + 3]
    reordered = policy.generate(
        observations[::-1], num_samples=3, max_new_tokens=8, observation_seeds=seeds[::-1]
    )
    assert reordered.texts[:3] == batch.texts[-3:]


def test_generator_seed_and_observation_seeds_agree(policy, observations):
    by_run_seed = policy.generate(observations, num_samples=2, max_new_tokens=6, generator_seed=4)
    explicit = [derive_seed(4, b) for b in range(len(observations))]
    by_observation = policy.generate(
        observations, num_samples=2, max_new_tokens=6, observation_seeds=explicit
    )
    assert by_run_seed.texts == by_observation.texts
    with pytest.raises(ValueError, match="observation seeds"):
        policy.generate(observations, num_samples=2, max_new_tokens=6, observation_seeds=[1] * 9)
