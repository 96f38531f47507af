"""Off-policy sequence masking (TRL's ``off_policy_mask_threshold``, DeepSeek-V3.2 eq. 9) against TRL 1.16's
own ``_compute_loss`` on identical tensors: loss, gradient and the logged metrics they share."""

from __future__ import annotations

import pytest
import torch

from agents.config import SetupError
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss
from agents.grpo.variants import off_policy_mask
from tests.agents.grpo.test_variants import CASES, TRL_METRIC, _batch, _loss_and_grad
from tests.agents.grpo.trl_reference import trl_compute_loss, trl_config
from tests.agents.support import train_help

# (our options, TRL's) of the loss the mask multiplies; T = 6 = max_completion_length
LOSSES = {name: CASES[name] for name in ("grpo", "dapo", "dr_grpo", "cispo", "sapo", "luspo", "vespo")}
GSPO = {"loss_type": "grpo", "importance_sampling_level": "sequence"}  # at the default clip range
LOSSES["gspo"] = (GSPO, GSPO)
# _batch's mean per-completion KL (old - logp) lies within about +-0.3: these thresholds drop some of its
# negative-advantage completions and keep others
THRESHOLDS = (0.02, 0.1)


def _engine_logp(old: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """An engine's log-probs: the trainer's pi_old moved by up to +-0.5 nats (0 off the mask)."""
    g = torch.Generator().manual_seed(200 + seed)
    return (old + (torch.rand(old.shape, generator=g) - 0.5)) * mask


def _parity(loss_name: str, threshold: float, beta: float, seed: int, engine: bool) -> dict[str, float]:
    ours_options, trl_options = LOSSES[loss_name]
    logp, old, ref, _, adv, mask = _batch(seed)
    sampling = _engine_logp(old, mask, seed) if engine else None
    config = GRPOConfig(
        max_new_tokens=6, beta=beta, use_bias_correction_kl=True, off_policy_mask_threshold=threshold,
        **ours_options,
    )  # fmt: skip
    loss, grad, metrics = _loss_and_grad(
        config, logp, old, adv, mask, ref if beta else None, sampling_logp=sampling
    )
    y = logp.clone().requires_grad_(True)
    trl_loss, trl_metrics = trl_compute_loss(
        y, old, adv, mask, ref if beta else None, sampling_logp=sampling, max_completion_length=6,
        beta=beta, use_bias_correction_kl=True, off_policy_mask_threshold=threshold, **trl_options,
    )  # fmt: skip
    trl_loss.backward()
    shared = {ours: theirs for ours, theirs in TRL_METRIC.items() if ours in metrics}
    assert set(shared.values()) == {name for name in trl_metrics if name in TRL_METRIC.values()}
    return {
        "loss": abs(float(loss - trl_loss.detach())),
        "grad": float((grad - y.grad).abs().max()),
        "metrics": max((abs(metrics[a] - trl_metrics[b]) for a, b in shared.items()), default=0.0),
    }


@pytest.mark.parametrize("engine", [False, True], ids=["from pi_old", "from the engine"])
@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_loss_gradient_and_metrics_are_trls(loss_name, threshold, engine):
    worst = dict.fromkeys(("loss", "grad", "metrics"), 0.0)
    for seed in range(3):
        for beta in (0.0, 0.3):
            found = _parity(loss_name, threshold, beta, seed, engine)
            worst = {k: max(worst[k], found[k]) for k in worst}
    print(
        f"\nPARITY off_policy_mask {loss_name} {threshold} engine={engine}: max |diff| "
        + " ".join(f"{k} {v:.3g}" for k, v in worst.items())
    )
    assert max(worst.values()) <= 1e-6, worst


@pytest.mark.parametrize("engine", [False, True])
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_the_mask_acts_on_the_parity_batches(threshold, engine):
    """Over the parity batches some negative-advantage completions are dropped and others kept (else the
    parity would compare masks that are all ones, or all zeros); positive advantages always stay."""
    negatives = []
    for seed in range(3):
        logp, old, _, _, adv, mask = _batch(seed)
        behaviour = _engine_logp(old, mask, seed) if engine else old
        kept = off_policy_mask(logp, behaviour, adv.unsqueeze(1), mask, threshold).squeeze(1)
        negatives.append(kept[adv < 0])
        assert (kept[adv >= 0] == 1).all()
    negatives = torch.cat(negatives)
    assert (negatives == 0).any() and (negatives == 1).any(), negatives


def test_the_mask_by_hand():
    logp = torch.tensor([[-1.0, -1.0, 0.0], [-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0], [-1.0, 0.0, 0.0]])
    behaviour = torch.tensor([[-0.2, -1.0, 9.0], [-0.2, -1.0, -1.0], [-1.0, -1.0, -1.0], [-1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([[-1.0], [-1.0], [2.0], [-3.0]])
    # mean KLs: 0.8 / 2 = 0.4 (the padded token's 10 nats do not count), 0.8 / 3, 1.0, 0.0
    kept = off_policy_mask(logp, behaviour, adv, mask, threshold=0.3)
    assert kept.tolist() == [[0.0], [1.0], [1.0], [1.0]]  # row 2: far, but a positive advantage stays
    assert off_policy_mask(logp, behaviour, adv, mask, threshold=0.4).tolist() == [[1.0]] * 4  # <= keeps
    nan = behaviour.clone()
    nan[0, 0] = float("nan")  # a token the engine could not score: no KL evidence (TRL), the row stays
    assert off_policy_mask(logp, nan, adv, mask, threshold=0.3)[0, 0] == 1.0


def test_on_policy_nothing_is_masked():
    """pi = pi_old = the engine's: the KL is 0, the loss and gradient bit for bit those without the mask."""
    logp, _, ref, _, adv, mask = _batch(1)
    results = []
    for threshold in (0.0, 1e-9):
        config = GRPOConfig(max_new_tokens=6, beta=0.3, off_policy_mask_threshold=threshold)
        results.append(_loss_and_grad(config, logp, logp, adv, mask, ref, sampling_logp=logp.clone()))
    (plain, plain_grad, plain_metrics), (masked, masked_grad, metrics) = results
    assert torch.equal(plain, masked) and torch.equal(plain_grad, masked_grad)
    assert metrics["off_policy_masked_fraction"] == 0.0
    assert "off_policy_masked_fraction" not in plain_metrics


def test_masked_fraction_is_logged():
    logp, old, _, _, adv, mask = _batch(0)
    config = GRPOConfig(max_new_tokens=6, beta=0.0, off_policy_mask_threshold=0.02)
    _, metrics = grpo_loss(logp, old, adv, mask, config.loss_settings())
    kept = off_policy_mask(logp, old, adv.unsqueeze(1), mask, 0.02)
    assert metrics["off_policy_masked_fraction"] == pytest.approx(float(1 - kept.mean()))
    assert 0 < metrics["off_policy_masked_fraction"] < 0.5


def test_default_is_trls_off():
    ours, theirs = GRPOConfig(), trl_config()
    assert ours.off_policy_mask_threshold == 0.0 and theirs.off_policy_mask_threshold is None
    assert ours.loss_settings().off_policy_mask_threshold is None  # 0 stands for TRL's None
    assert GRPOConfig(off_policy_mask_threshold=0.5).loss_settings().off_policy_mask_threshold == 0.5
    with pytest.raises(SetupError, match="off_policy_mask_threshold"):
        GRPOConfig(off_policy_mask_threshold=-0.1)


def test_train_help_names_it():
    """``perception-r1 train --help``, the installed command, as a user reads it."""
    flat = train_help()
    assert "--off-policy-mask-threshold" in flat and "TRL's off_policy_mask_threshold" in flat


def test_the_agent_measures_from_the_engines_logprobs(tiny_model_dir, tmp_path):
    """On-policy with the fast engine nothing is dropped; an engine whose log-probs drift off the trainer's
    (the vLLM case) makes the same batch's negative-advantage completions off-policy."""
    from tests.agents.grpo.test_sampling_correction import DriftingEngine
    from tests.agents.support import make_trainer

    trainer = make_trainer(
        "grpo", tiny_model_dir, tmp_path, total_steps=1, beta=0.0, off_policy_mask_threshold=1e-3
    )
    agent = trainer.agent
    batch = trainer.collect(0)
    assert batch.rollout.sampling_logprobs is not None  # the fast engine's, equal to the trainer's
    advantages = agent.batch_advantages(batch).flatten()
    assert (advantages < 0).any()
    assert agent.update(batch)["off_policy_masked_fraction"] == 0.0
    agent.engine = DriftingEngine(agent.policy)
    drifted = trainer.collect(0)
    # the drift is +0.4 sin(i): each completion's mean KL is the mean of -0.4 sin over its tokens
    mask = drifted.rollout.completion_mask.float()
    with torch.no_grad():
        trainer_logp = agent.logprobs(drifted.rollout)
    agent._sampling_logp = None
    expected = off_policy_mask(
        trainer_logp, drifted.rollout.sampling_logprobs, agent.batch_advantages(drifted).flatten()[:, None],
        mask, 1e-3,
    )  # fmt: skip
    assert (expected == 0).any()
    metrics = agent.update(drifted)
    assert metrics["off_policy_masked_fraction"] == pytest.approx(float(1 - expected.mean()), abs=1e-6)
