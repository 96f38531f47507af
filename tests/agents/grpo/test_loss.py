import math

import pytest
import torch

from agents.grpo.loss import LossSettings, grpo_loss
from agents.losses import masked_mean

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


def test_unknown_loss_type():
    logp, mask, adv = _batch()
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logp, logp, adv, mask, LossSettings(loss_type="ppo", beta=0.0))


def trl_loss(logp, old, ref, adv, mask, beta, loss_type, max_completion_length, bias_correction):
    """TRL 1.16 GRPOTrainer._compute_loss (grpo_trainer.py ~l. 3091-3170; token-level ratio, one process,
    no gradient accumulation; TRL's bnpo is our dapo on one batch), restated."""
    advantages = adv.unsqueeze(1)
    coef_1 = torch.exp(logp - old)
    per_token_kl = torch.exp(ref - logp) - (ref - logp) - 1
    if bias_correction:
        per_token_kl = per_token_kl * coef_1
    coef_2 = torch.clamp(coef_1, 1 - 0.2, 1 + 0.2)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages) + beta * per_token_kl
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean(), per_token_kl
    if loss_type == "dapo":
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0), per_token_kl
    return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length), per_token_kl


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("on_policy", [True, False])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_loss_and_gradient_are_trls(loss_type, on_policy, bias_correction):
    logp, mask, adv = _batch()
    g = torch.Generator().manual_seed(1)
    ref = logp - 0.3 * torch.rand(logp.shape, generator=g)
    old = logp if on_policy else logp + 0.3 * (torch.rand(logp.shape, generator=g) - 0.5)
    settings = LossSettings(
        beta=0.5, loss_type=loss_type, bias_correction_kl=bias_correction, max_completion_length=7
    )
    ours_logp, trl_logp = logp.clone().requires_grad_(True), logp.clone().requires_grad_(True)
    ours, metrics = grpo_loss(ours_logp, old.detach(), adv, mask, settings, ref_logp=ref)
    theirs, trl_kl = trl_loss(trl_logp, old.detach(), ref, adv, mask, 0.5, loss_type, 7, bias_correction)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_logp.grad, trl_logp.grad)
    # the logged KL is the weighted one, as TRL logs it
    assert metrics["kl"] == pytest.approx(float(masked_mean(trl_kl.detach(), mask)), rel=1e-6)


def test_bias_correction_changes_the_on_policy_gradient_not_the_value():
    """On-policy the ratio is 1 but differentiable: the corrected KL's gradient gains kl x d log pi."""
    logp, mask, adv = _batch()
    ref = logp - 0.2
    grads, values = [], []
    for corrected in (False, True):
        x = logp.clone().requires_grad_(True)
        settings = LossSettings(beta=1.0, bias_correction_kl=corrected)
        loss, _ = grpo_loss(x, x.detach(), adv, mask, settings, ref)
        loss.backward()
        grads.append(x.grad)
        values.append(float(loss.detach()))
    assert values[0] == pytest.approx(values[1])
    k3 = math.exp(-0.2) + 0.2 - 1  # the same on every token; grpo weight of a token: 1 / (n_tokens_i * N)
    torch.testing.assert_close(grads[1] - grads[0], k3 * mask / mask.sum(1, keepdim=True) / 4)
