"""RLOO: the leave-one-out advantage and the REINFORCE loss by hand, and one step on the tiny model."""

import pytest
import torch

from agents.rloo.agent import leave_one_out_advantages, rloo_loss
from agents.rloo.config import RLOOConfig
from tests.agents.support import make_trainer


def test_hand_computed_advantages():
    # each 1 is compared with the mean of (0, 0, 1) = 1/3; each 0 with the mean of (1, 0, 1) = 2/3
    adv = leave_one_out_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(adv, torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3]]))


def test_advantages_are_g_over_g_minus_1_times_centred_rewards():
    r = torch.rand(5, 6, generator=torch.Generator().manual_seed(0))
    expected = 6 / 5 * (r - r.mean(dim=1, keepdim=True))
    torch.testing.assert_close(leave_one_out_advantages(r), expected)
    # G = 2: each answer against the other one
    pair = leave_one_out_advantages(torch.tensor([[3.0, 1.0]]))
    torch.testing.assert_close(pair, torch.tensor([[2.0, -2.0]]))


def test_equal_rewards_give_exactly_zero():
    assert torch.equal(leave_one_out_advantages(torch.full((2, 4), 0.7)), torch.zeros(2, 4))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="G >= 2"):
        leave_one_out_advantages(torch.tensor([[1.0], [0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        leave_one_out_advantages(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="group_size"):
        RLOOConfig(group_size=1)
    with pytest.raises(ValueError, match="loss_type"):
        RLOOConfig(loss_type="ppo")


def test_hand_computed_loss_aggregations():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])  # [N=2, T=3]
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([1.0, -2.0])
    # sequence: -(1 * -3) and -(-2 * -0.5) -> 3 and -1 -> mean 1
    loss, _ = rloo_loss(logp, adv, mask, "sequence")
    torch.testing.assert_close(loss, torch.tensor(1.0))
    # sequence_mean: 3/2 and -1/1 -> mean 0.25
    loss, _ = rloo_loss(logp, adv, mask, "sequence_mean")
    torch.testing.assert_close(loss, torch.tensor(0.25))
    # token: (1 + 2 - 1) / 3 tokens
    loss, _ = rloo_loss(logp, adv, mask, "token")
    torch.testing.assert_close(loss, torch.tensor(2 / 3))


def test_kl_term_is_zero_against_itself_and_needs_a_reference():
    logp = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    loss, metrics = rloo_loss(logp, torch.zeros(1), mask, "token", beta=0.5, ref_logp=logp.clone())
    assert float(loss) == 0.0 and metrics["kl"] == 0.0
    with pytest.raises(ValueError, match="ref_logp"):
        rloo_loss(logp, torch.zeros(1), mask, beta=0.5)


def test_gradient_is_reinforce():
    # d loss / d logp_t = -A for every real token (sequence aggregation, one answer)
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    loss, _ = rloo_loss(logp, torch.tensor([0.5]), torch.tensor([[1, 1, 0]]), "sequence")
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -0.5, 0.0]]))


def test_micro_batches_give_the_whole_batch_gradient(tiny_model_dir, tmp_path):
    """Accumulating over chunks of 3 completions gives the gradient of the whole batch at once."""
    grads = []
    for size in (0, 3):
        trainer = make_trainer(
            "rloo", tiny_model_dir, tmp_path / f"m{size}", micro_batch_size=size, loss_type="token", beta=0.04
        )
        model = trainer.agent.policy.model

        def record(model=model, **kwargs):  # instead of the optimiser step: keep the accumulated gradient
            grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
            return 0.0

        trainer.agent.clip_and_step = record
        trainer.agent.update(trainer.collect(0))
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6, msg=k)
