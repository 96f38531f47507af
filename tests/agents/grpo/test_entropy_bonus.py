"""The entropy bonus (TRL 1.16's ``entropy_coef``) against TRL's own ``_compute_loss`` on identical tensors:
the loss, its gradient with respect to the log-probs and to the entropies, and the logged metrics."""

from __future__ import annotations

import pytest
import torch

from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss
from agents.grpo.variants import entropy_bonus, high_entropy_mask
from tests.agents.grpo.test_variants import CASES, TRL_METRIC, _batch, _chunk_weights
from tests.agents.grpo.trl_reference import trl_compute_loss, trl_config
from tests.agents.support import train_help

# ours -> TRL's: the bonus's own metrics besides the variants' (TRL's `entropy` is the entropy of each
# position's distribution, our token_entropy; our `entropy` is the sampled tokens' mean -log p)
BONUS_METRICS = {"policy_loss": "policy_loss", "entropy_coef": "entropy_coef", "token_entropy": "entropy"}
LOSSES = [
    "grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo", "gspo (sequence, grpo)",
    "top_entropy_quantile (grpo)", "top_entropy_quantile 0 (dapo)",
]  # fmt: skip


def _run(fn, options: dict, coef: float, beta: float, seed: int, **extra):
    logp, old, ref, entropies, adv, mask = _batch(seed)
    x, h = logp.clone().requires_grad_(True), entropies.clone().requires_grad_(True)
    loss, metrics = fn(x, old, adv, mask, ref if beta else None, h, options, coef, beta, **extra)
    loss.backward()
    return loss.detach(), x.grad, h.grad, metrics


def _ours(x, old, adv, mask, ref, h, options, coef, beta):
    config = GRPOConfig(
        max_new_tokens=6, beta=beta, use_bias_correction_kl=True, entropy_coef=coef, **options
    )
    learn_mask = None
    if config.top_entropy_quantile < 1:
        learn_mask = high_entropy_mask(h.detach(), mask, config.top_entropy_quantile)
    return grpo_loss(x, old, adv, mask, config.loss_settings(), ref, learn_mask, entropies=h)


def _trls(x, old, adv, mask, ref, h, options, coef, beta):
    return trl_compute_loss(
        x, old, adv, mask, ref, h, max_completion_length=6, beta=beta, use_bias_correction_kl=True,
        entropy_coef=coef, **options,
    )  # fmt: skip


@pytest.mark.parametrize("coef", [0.01, 0.5, -0.2])
@pytest.mark.parametrize("case", LOSSES)
def test_loss_gradients_and_metrics_are_trls(case, coef):
    ours_options, trl_options = CASES[case]
    worst = dict.fromkeys(("loss", "grad logp", "grad entropy", "metrics"), 0.0)
    for seed in range(3):
        for beta in (0.0, 0.3):
            loss, grad, grad_h, metrics = _run(_ours, ours_options, coef, beta, seed)
            trl_loss, trl_grad, trl_grad_h, trl_metrics = _run(_trls, trl_options, coef, beta, seed)
            shared = {**{a: b for a, b in TRL_METRIC.items() if a in metrics}, **BONUS_METRICS}
            assert set(shared.values()) <= set(trl_metrics), (shared, trl_metrics)
            found = {
                "loss": abs(float(loss - trl_loss)),
                "grad logp": float((grad - trl_grad).abs().max()),
                "grad entropy": float((grad_h - trl_grad_h).abs().max()),
                "metrics": max(abs(metrics[a] - trl_metrics[b]) for a, b in shared.items()),
            }
            worst = {k: max(worst[k], found[k]) for k in worst}
    print(
        f"\nPARITY entropy_coef {case} {coef}: max |diff| "
        + " ".join(f"{k} {v:.3g}" for k, v in worst.items())
    )
    assert max(worst.values()) <= 1e-6, worst


def test_the_bonus_by_hand():
    entropies = torch.tensor([[1.0, 2.0, 9.0], [3.0, 0.5, 0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    bonus = entropy_bonus(entropies, mask)
    assert float(bonus.detach()) == pytest.approx((1 + 2 + 3 + 0.5 + 0.5) / 5)  # the padded 9 does not count
    bonus.backward()
    torch.testing.assert_close(entropies.grad, torch.tensor([[0.2, 0.2, 0.0], [0.2, 0.2, 0.2]]))
    learn = torch.tensor([[False, True, True], [True, False, False]])  # top_entropy_quantile's tokens
    assert float(entropy_bonus(entropies, mask, learn)) == pytest.approx((2 + 3) / 2)


def test_the_loss_is_the_policy_loss_minus_the_bonus():
    logp, old, ref, entropies, adv, mask = _batch(2)
    config = GRPOConfig(max_new_tokens=6, entropy_coef=0.3)
    plain = grpo_loss(logp, old, adv, mask, GRPOConfig(max_new_tokens=6).loss_settings(), ref)
    result = grpo_loss(logp, old, adv, mask, config.loss_settings(), ref, entropies=entropies)
    mean_entropy = float((entropies * mask).sum() / mask.sum())
    assert float(result.value) == pytest.approx(float(plain.value) - 0.3 * mean_entropy, abs=1e-7)
    assert result.metrics["policy_loss"] == pytest.approx(float(plain.value), abs=1e-7)
    assert result.metrics["token_entropy"] == pytest.approx(mean_entropy)
    assert "policy_loss" not in plain.metrics
    with pytest.raises(ValueError, match="entropies"):
        grpo_loss(logp, old, adv, mask, config.loss_settings(), ref)


def test_token_weighted_micro_batches_add_up_to_the_whole_batch():
    """dapo's micro-batches weigh by tokens: their bonuses add up to the whole batch's token mean."""
    logp, old, ref, entropies, adv, mask = _batch(1)
    settings = GRPOConfig(loss_type="dapo", max_new_tokens=6, entropy_coef=0.5).loss_settings()
    whole = grpo_loss(logp, old, adv, mask, settings, ref, entropies=entropies)
    chunks = [torch.arange(0, 2), torch.arange(2, 5), torch.arange(5, 6)]
    weights = _chunk_weights(mask, chunks, True)
    parts = [
        grpo_loss(logp[i], old[i], adv[i], mask[i], settings, ref[i], entropies=entropies[i]) for i in chunks
    ]
    total = sum(float(part.value) * w for part, w in zip(parts, weights))
    assert total == pytest.approx(float(whole.value), abs=1e-6)


def test_default_is_trls():
    assert GRPOConfig().entropy_coef == trl_config().entropy_coef == 0.0
    assert not GRPOConfig().needs_entropies and GRPOConfig(entropy_coef=0.1).needs_entropies


def test_train_help_names_it():
    flat = train_help()
    assert "--entropy-coef" in flat and "TRL's entropy_coef" in flat


def test_the_bonus_reaches_the_model_and_is_logged(tiny_model_dir, tmp_path):
    """Through the real forward: the entropies carry their gradient into the weights (the same batch, another
    update), and the update logs policy_loss, entropy_coef and token_entropy."""
    from tests.agents.support import make_trainer

    runs = {}
    for coef in (0.0, 5.0):
        trainer = make_trainer("grpo", tiny_model_dir, tmp_path / str(coef), total_steps=1, entropy_coef=coef)
        batch = trainer.collect(0)
        runs[coef] = (trainer.agent, trainer.agent.update(batch))
    (plain, _), (bonus, metrics) = runs[0.0], runs[5.0]
    assert metrics["entropy_coef"] == 5.0 and metrics["token_entropy"] > 0
    assert metrics["loss"] == pytest.approx(metrics["policy_loss"] - 5.0 * metrics["token_entropy"], abs=1e-5)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(plain.policy.model.parameters(), bonus.policy.model.parameters())
    ]
    assert any(moved)
