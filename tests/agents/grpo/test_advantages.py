import pytest
import torch

from agents.grpo.advantages import group_advantages, zero_std_fraction


def test_hand_computed_group():
    # rewards 0, 1, 2, 3: mean 1.5, unbiased std sqrt(5/3) = 1.2910
    adv = group_advantages(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), eps=0.0)
    expected = torch.tensor([[-1.5, -0.5, 0.5, 1.5]]) / (5 / 3) ** 0.5
    torch.testing.assert_close(adv, expected)


def test_zero_std_group_gives_zero_not_nan():
    adv = group_advantages(torch.tensor([[0.7, 0.7, 0.7], [0.0, 1.0, 0.0]]))
    assert torch.isfinite(adv).all()
    assert torch.equal(adv[0], torch.zeros(3))
    assert adv[1, 1] > 0 > adv[1, 0]


def test_unscaled_is_centred_only():
    adv = group_advantages(torch.tensor([[1.0, 3.0]]), scale_std=False)
    torch.testing.assert_close(adv, torch.tensor([[-1.0, 1.0]]))


def test_group_of_one_has_no_signal():
    assert torch.equal(group_advantages(torch.tensor([[5.0], [2.0]])), torch.zeros(2, 1))


def test_advantages_sum_to_zero_per_group():
    r = torch.rand(16, 8, generator=torch.Generator().manual_seed(0))
    assert group_advantages(r).sum(dim=1).abs().max() < 1e-5


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        group_advantages(torch.tensor([1.0, 2.0]))


def test_zero_std_fraction():
    assert zero_std_fraction(torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0], [0.0, 0.5]])) == 0.5
