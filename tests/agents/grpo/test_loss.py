import math

import pytest
import torch

from agents.grpo.loss import LossSettings, grpo_loss, kl_to_reference, masked_mean

NO_KL = LossSettings(beta=0.0)


def _batch():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 5, generator=g)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.float32
    )
    adv = torch.tensor([1.0, -0.5, 2.0, -2.5])
    return logp, mask, adv


def test_ratio_one_gives_minus_mean_advantage():
    logp, mask, adv = _batch()
    for loss_type in ("grpo", "dapo"):
        loss, metrics = grpo_loss(logp, logp.detach(), adv, mask, LossSettings(beta=0.0, loss_type=loss_type))
        if loss_type == "grpo":
            assert loss.item() == pytest.approx(-adv.mean().item())
        else:  # token-weighted: (1*3 - 0.5*5 + 2*1 - 2.5*2) / 11
            assert loss.item() == pytest.approx(-(3 - 2.5 + 2 - 5) / 11)
        assert metrics["clip_fraction"] == 0.0


def test_dr_grpo_normalises_by_constant_length():
    logp, mask, adv = _batch()
    settings = LossSettings(beta=0.0, loss_type="dr_grpo", max_completion_length=10)
    loss, _ = grpo_loss(logp, logp.detach(), adv, mask, settings)
    assert loss.item() == pytest.approx(-(3 - 2.5 + 2 - 5) / (4 * 10))


def test_gradient_of_ratio_one_is_advantage_weighted_logprob_gradient():
    logp, mask, adv = _batch()
    logp = logp.clone().requires_grad_(True)
    loss, _ = grpo_loss(logp, logp.detach(), adv, mask, NO_KL)
    loss.backward()
    # d loss / d logp[i, t] = -A_i / (n_tokens_i * N) on real tokens, 0 on padding
    expected = -adv[:, None] * mask / mask.sum(1, keepdim=True) / 4
    torch.testing.assert_close(logp.grad, expected)


def test_clipping_acts_at_one_plus_minus_epsilon():
    settings = LossSettings(beta=0.0, epsilon_low=0.2, epsilon_high=0.3)
    old = torch.zeros(4, 1)
    mask = torch.ones(4, 1)
    # ratios 1.5 (A>0: clipped at 1.3), 1.1 (A>0: not clipped), 0.5 (A<0: clipped at 0.8), 0.9 (A<0: not)
    logp = torch.log(torch.tensor([[1.5], [1.1], [0.5], [0.9]])).requires_grad_(True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, metrics = grpo_loss(logp, old, adv, mask, settings)
    # per-sample: -min(r*A, clip(r)*A) = -1.3, -1.1, +0.8, +0.9
    assert loss.item() == pytest.approx((-1.3 - 1.1 + 0.8 + 0.9) / 4)
    assert metrics["clip_fraction"] == pytest.approx(0.5)
    loss.backward()
    assert logp.grad[0].item() == 0.0 and logp.grad[2].item() == 0.0  # clipped: no gradient
    assert logp.grad[1].item() != 0.0 and logp.grad[3].item() != 0.0


def test_pessimistic_side_is_not_clipped():
    # ratio 0.5 with A > 0: min picks the unclipped 0.5*A, the gradient still flows
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_(True)
    loss, _ = grpo_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), NO_KL)
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()
    assert logp.grad.item() == pytest.approx(-0.5)


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_to_reference(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # k3 = q/p - log(q/p) - 1 = 0.5 - log 0.5 - 1
    assert kl_to_reference(logp, ref, "k3").item() == pytest.approx(0.5 + math.log(2) - 1)
    assert kl_to_reference(logp, logp, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_to_reference(logp, ref, "k2")


def test_kl_term_adds_beta_times_mean_kl():
    logp, mask, adv = _batch()
    ref = logp - 0.1
    settings = LossSettings(beta=0.5)
    loss, metrics = grpo_loss(logp, logp.detach(), adv, mask, settings, ref_logp=ref)
    k3 = math.exp(-0.1) + 0.1 - 1
    assert loss.item() == pytest.approx(-adv.mean().item() + 0.5 * k3, rel=1e-5)
    assert metrics["kl"] == pytest.approx(k3, rel=1e-5)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp, adv, mask, settings)


def test_masked_mean_of_empty_row_is_zero():
    v = torch.ones(2, 3)
    m = torch.tensor([[0, 0, 0], [1, 1, 0]])
    torch.testing.assert_close(masked_mean(v, m, dim=1), torch.tensor([0.0, 1.0]))


def test_unknown_loss_type():
    logp, mask, adv = _batch()
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logp, logp, adv, mask, LossSettings(loss_type="ppo", beta=0.0))
