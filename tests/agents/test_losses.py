"""The loss helpers every algorithm shares (agents/losses.py), by hand."""

import math

import pytest
import torch

from agents.losses import kl_to_reference, masked_mean, zero_std_fraction


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_to_reference(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # k3 = q/p - log(q/p) - 1 = 0.5 - log 0.5 - 1
    assert kl_to_reference(logp, ref, "k3").item() == pytest.approx(0.5 + math.log(2) - 1)
    assert kl_to_reference(logp, logp, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_to_reference(logp, ref, "k2")


def test_masked_mean_of_empty_row_is_zero():
    v = torch.ones(2, 3)
    m = torch.tensor([[0, 0, 0], [1, 1, 0]])
    torch.testing.assert_close(masked_mean(v, m, dim=1), torch.tensor([0.0, 1.0]))


def test_zero_std_fraction():
    assert zero_std_fraction(torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0], [0.0, 0.5]])) == 0.5


def test_a_loss_says_what_it_is_a_mean_over_and_unpacks_as_value_and_metrics():
    from agents.losses import Loss, as_loss

    value = torch.tensor(2.5)
    loss, metrics = Loss(value, {"loss": 2.5}, "tokens")
    assert loss is value and metrics == {"loss": 2.5}
    assert as_loss((value, {"loss": 2.5})).mean_over == "answers"  # a plain pair: a per-answer mean
    assert as_loss(Loss(value, {}, "tokens")).mean_over == "tokens"
    with pytest.raises(ValueError, match="answers"):
        Loss(value, {}, "sequences")
