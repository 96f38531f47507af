import pytest
import torch

from agents.grpo.advantages import group_advantages


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
    adv = group_advantages(torch.tensor([[1.0, 3.0]]), scale="none")
    torch.testing.assert_close(adv, torch.tensor([[-1.0, 1.0]]))


def test_batch_scale_by_hand():
    # group means 1 and 3; all four rewards 0, 2, 2, 4: mean 2, unbiased std sqrt(8/3)
    adv = group_advantages(torch.tensor([[0.0, 2.0], [2.0, 4.0]]), scale="batch", eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]) / (8 / 3) ** 0.5)


def trl_advantages(rewards: torch.Tensor, scale_rewards: str) -> torch.Tensor:
    """TRL 1.16 GRPOTrainer._generate_and_score_completions (grpo_trainer.py ~l. 2762-2787, one reward
    function, no NaN), restated on flat rewards [B*G] in observation-major order; returned as [B, G]."""
    num_generations = rewards.shape[1]
    rewards = rewards.flatten()

    def nanstd(tensor, dim=None):  # trl.trainer.utils.nanstd: Bessel-corrected
        mean = torch.nanmean(tensor, dim=dim, keepdim=True)
        variance = torch.nanmean((tensor - mean) ** 2, dim=dim, keepdim=True)
        count = torch.sum(~torch.isnan(tensor), dim=dim, keepdim=True)
        variance = variance * count / (count - 1)
        return torch.sqrt(variance).squeeze() if dim is None else torch.sqrt(variance).squeeze(dim)

    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
        std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    else:
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return advantages.view(-1, num_generations)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_scale_rewards_is_trls(scale):
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(5, 4, generator=g)
    rewards[1] = 0.5  # a unanimous group: 0 advantages, never NaN
    rewards[3] = torch.tensor([0.0, 1.0, 1.0, 1.0])
    ours = group_advantages(rewards, scale=scale, eps=1e-4)
    torch.testing.assert_close(ours, trl_advantages(rewards, scale))
    assert torch.equal(ours[1], torch.zeros(4))


def test_batch_scale_uses_the_whole_batch_of_every_rank():
    """A rank's share, scaled by the std of the global batch, is that share of the one-process advantages."""
    rewards = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    whole = group_advantages(rewards, scale="batch")
    for rank in range(2):
        share = rewards[2 * rank : 2 * rank + 2]
        ours = group_advantages(share, scale="batch", batch_rewards=rewards)
        torch.testing.assert_close(ours, whole[2 * rank : 2 * rank + 2])
    assert not torch.allclose(group_advantages(rewards[:2], scale="batch"), whole[:2])  # the shard's own std


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
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(torch.tensor([[1.0, 2.0]]), scale=True)
    with pytest.raises(ValueError, match="batch_rewards contain NaN"):
        infinite = torch.tensor([[float("inf"), 1.0]])
        group_advantages(torch.tensor([[1.0, 2.0]]), scale="batch", batch_rewards=infinite)
