"""The engine / trainer importance-sampling correction (TRL's ``vllm_importance_sampling_*``) against TRL
1.16's own code, on-policy, and through an engine whose sampling log-probs differ from the trainer's.

TRL computes the weight in its generation step and applies it in ``_compute_loss``: the harness runs both of
TRL's pieces (``tests/agents/grpo/trl_reference.py``) on the same tensors as our ``grpo_loss``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from agents.config import SetupError
from agents.engines.fast import FastEngine
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss
from agents.grpo.variants import sampling_correction
from agents.rollout import Rollout
from tests.agents.grpo.test_variants import CASES, _batch, _chunk_weights, _loss_and_grad
from tests.agents.grpo.trl_reference import trl_compute_loss, trl_config, trl_sampling_correction
from tests.agents.support import train_help

MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
SHARED_METRICS = ("sampling/sampling_logp_difference/mean", "sampling/importance_sampling_ratio/mean")
# (our options, TRL's) for the loss the correction multiplies; T = 6 = max_completion_length
LOSSES = {
    "grpo": CASES["grpo"],
    "dapo": CASES["dapo"],
    "cispo": CASES["cispo"],
    "gspo": CASES["gspo (sequence, grpo)"],
    "vespo": CASES["vespo"],
}
# every loss with every mode but vespo with a sequence-level weight, which TRL refuses, and so do we (below)
COMBINATIONS = [
    (name, mode) for name in LOSSES for mode in MODES if name != "vespo" or mode.startswith("token")
]
# bounds that act on _batch's weights (token ones spread about 0.5..2; sequence ones wider)
BOUNDS = {
    "default": {},
    "both": {"vllm_importance_sampling_clip_min": 0.7, "vllm_importance_sampling_clip_max": 1.5},
}


def _engine_logp(old: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """The engine's log-probs: the trainer's, each moved by up to +-0.6 nats (0 off the mask)."""
    g = torch.Generator().manual_seed(100 + seed)
    return (old + 1.2 * (torch.rand(old.shape, generator=g) - 0.5)) * mask


def _parity(loss_name: str, mode: str, bounds: dict, beta: float, seed: int) -> dict[str, float]:
    ours_options, trl_options = LOSSES[loss_name]
    logp, old, ref, _, adv, mask = _batch(seed)
    engine = _engine_logp(old, mask, seed)
    options = {"vllm_importance_sampling_mode": mode, **bounds}
    config = GRPOConfig(
        max_new_tokens=6,
        beta=beta,
        use_bias_correction_kl=True,  # TRL's default (ours is False); the KL is then weighted by pi / pi_old
        vllm_importance_sampling_correction=True,
        **options,
        **ours_options,
    )
    loss, grad, metrics = _loss_and_grad(
        config, logp, old, adv, mask, ref if beta else None, sampling_logp=engine
    )
    weight, trl_metrics = trl_sampling_correction(old, engine, mask, **options)
    y = logp.clone().requires_grad_(True)
    trl_loss, _ = trl_compute_loss(
        y, old, adv, mask, ref if beta else None, importance_sampling_ratio=weight,
        max_completion_length=6, beta=beta, use_bias_correction_kl=True, **options, **trl_options,
    )  # fmt: skip
    trl_loss.backward()
    ours_weight = sampling_correction(old, engine, mask, mode, config.vllm_importance_sampling_clip_min,
                                      config.vllm_importance_sampling_clip_max)  # fmt: skip
    return {
        "loss": abs(float(loss - trl_loss)),
        "grad": float((grad - y.grad).abs().max()),
        "weight": float((ours_weight - weight).abs().max()),
        "metrics": max(abs(metrics[name] - trl_metrics[name]) for name in SHARED_METRICS),
    }


@pytest.mark.parametrize("bounds", list(BOUNDS))
@pytest.mark.parametrize("loss_name, mode", COMBINATIONS)
def test_correction_loss_gradient_and_metrics_are_trls(loss_name, mode, bounds):
    worst = dict.fromkeys(("loss", "grad", "weight", "metrics"), 0.0)
    for seed in range(3):
        for beta in (0.0, 0.3):
            found = _parity(loss_name, mode, BOUNDS[bounds], beta, seed)
            worst = {k: max(worst[k], found[k]) for k in worst}
    print(
        f"\nPARITY correction {loss_name} {mode} {bounds}: max |diff| "
        + " ".join(f"{k} {v:.3g}" for k, v in worst.items())
    )
    assert max(worst.values()) <= 1e-6, worst


@pytest.mark.parametrize("mode", MODES)
def test_the_bounds_act_on_the_parity_batch(mode):
    """Else the parity of truncation and masking would compare weights that no bound touched."""
    _, old, _, _, _, mask = _batch(0)
    engine = _engine_logp(old, mask, 0)
    plain = sampling_correction(old, engine, mask, mode, 0.0, None)
    bounded = sampling_correction(old, engine, mask, mode, 0.7, 1.5)
    assert not torch.equal(plain, bounded)
    assert (plain != 1).any()


def test_weights_by_hand():
    old = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]])
    engine = torch.tensor([[-1.0 - 2.0, -2.0 + 0.5, 5.0], [-1.0, -1.0, -1.0]])  # row 0, token 2: padding
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    e = torch.e
    token = sampling_correction(old, engine, mask, "token_truncate", 0.0, 3.0)
    assert torch.allclose(token, torch.tensor([[3.0, e**-0.5, 1.0], [1.0, 1.0, 1.0]]))  # e^2 capped at 3
    masked = sampling_correction(old, engine, mask, "token_mask", 0.7, 3.0)
    assert torch.allclose(masked, torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))  # e^2 > 3, e^-0.5 < 0.7
    sequence = sampling_correction(old, engine, mask, "sequence_truncate", 0.0, 10.0)
    assert torch.allclose(sequence, torch.tensor([[e**1.5], [1.0]]))
    assert sampling_correction(old, engine, mask, "sequence_mask", 0.0, 3.0).tolist() == [[0.0], [1.0]]
    nan = engine.clone()
    nan[0, 0] = float("nan")  # a token the engine could not score: weight 1, as TRL
    assert sampling_correction(old, nan, mask, "token_truncate", 0.0, 3.0)[0, 0] == 1.0


@pytest.mark.parametrize("loss_name, mode", COMBINATIONS)
def test_on_policy_the_correction_is_exactly_nothing(loss_name, mode):
    """Engine log-probs equal to the trainer's: weight exactly 1, the loss and gradient bit for bit those
    without the correction (even with bounds that would act on any other weight)."""
    ours_options, _ = LOSSES[loss_name]
    logp, old, ref, _, adv, mask = _batch(1)
    results = []
    for correction in (False, True):
        config = GRPOConfig(
            max_new_tokens=6, beta=0.3, vllm_importance_sampling_correction=correction,
            vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_min=0.99,
            vllm_importance_sampling_clip_max=1.01, **ours_options,
        )  # fmt: skip
        results.append(_loss_and_grad(config, logp, old, adv, mask, ref, sampling_logp=old.clone()))
    (plain, plain_grad, plain_metrics), (corrected, corrected_grad, metrics) = results
    assert torch.equal(plain, corrected) and torch.equal(plain_grad, corrected_grad)
    assert metrics["sampling/importance_sampling_ratio/mean"] == 1.0
    assert metrics["sampling/sampling_logp_difference/mean"] == 0.0
    assert "sampling/importance_sampling_ratio/mean" not in plain_metrics


def test_defaults_are_trls_but_the_switch():
    """Mode and bounds as TRL's (clip_min 0 = TRL's None: no bound on a positive weight); the switch is off
    (TRL's True acts only with vLLM; here the default engines agree with the trainer)."""
    ours, theirs = GRPOConfig(), trl_config()
    assert ours.vllm_importance_sampling_mode == theirs.vllm_importance_sampling_mode == "sequence_mask"
    assert ours.vllm_importance_sampling_clip_max == theirs.vllm_importance_sampling_clip_max == 3.0
    assert ours.vllm_importance_sampling_clip_min == 0.0 and theirs.vllm_importance_sampling_clip_min is None
    assert ours.vllm_importance_sampling_correction is False and theirs.vllm_importance_sampling_correction
    assert ours.loss_settings().sampling_correction_mode is None


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"vllm_importance_sampling_clip_min": 2.0, "vllm_importance_sampling_clip_max": 2.0},
            "must be below",
        ),
        ({"vllm_importance_sampling_clip_max": 0.0}, "vllm_importance_sampling_clip_max"),
        ({"vllm_importance_sampling_mode": "token"}, "vllm_importance_sampling_mode"),
        (
            {
                "loss_type": "vespo",
                "vllm_importance_sampling_correction": True,
            },  # default mode: sequence_mask
            "token_truncate or token_mask",
        ),
    ],
)
def test_impossible_options_are_refused_with_a_reason(options, message):
    with pytest.raises(SetupError, match=message):
        GRPOConfig(**options)


def test_train_help_names_the_trl_options():
    """``perception-r1 train --help``, the installed command, as a user reads it."""
    flat = train_help()
    for text in (
        "--vllm-importance-sampling-correction",
        "--vllm-importance-sampling-mode {token_truncate,token_mask,sequence_truncate,sequence_mask}",
        "--vllm-importance-sampling-clip-max", "--vllm-importance-sampling-clip-min",
        "TRL's vllm_importance_sampling_correction", "TRL's vllm_importance_sampling_mode",
        "TRL's vllm_importance_sampling_clip_max", "vllm_importance_sampling_cap",
        "TRL's vllm_importance_sampling_clip_min",
    ):  # fmt: skip
        assert text in flat, text


# --------------------------------------------------------------------------- through a rollout engine
class DriftingEngine:
    """The fast engine, with sampling log-probs moved off the trainer's by a fixed pattern: the vLLM case
    (another kernel, another precision), which needs a GPU, on the CPU."""

    name = "drifting"

    def __init__(self, policy):
        self.fast = FastEngine(policy)
        self.shares_weights = self.fast.shares_weights

    def generate(self, observations, num_samples, sampling, observation_seeds=None) -> Rollout:
        rollout = self.fast.generate(observations, num_samples, sampling, observation_seeds=observation_seeds)
        mask = rollout.completion_mask.float()
        drift = 0.4 * torch.sin(torch.arange(mask.numel(), dtype=torch.float32)).reshape(mask.shape)
        rollout.sampling_logprobs = (rollout.sampling_logprobs + drift) * mask
        return rollout

    def load_weights(self, state_dict):
        self.fast.load_weights(state_dict)


def _trainer(tiny_model_dir, out, **options):
    from tests.agents.support import make_trainer

    trainer = make_trainer("grpo", tiny_model_dir, out, total_steps=1, beta=0.0, **options)
    trainer.agent.engine = DriftingEngine(trainer.agent.policy)
    return trainer


def test_an_engine_whose_logprobs_differ_changes_the_update_as_trls(tiny_model_dir, tmp_path):
    options = {"vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_clip_max": 1.3}
    corrected = _trainer(tiny_model_dir, tmp_path / "on", vllm_importance_sampling_correction=True, **options)
    plain = _trainer(tiny_model_dir, tmp_path / "off", **options)
    agent = corrected.agent
    batch = corrected.collect(0)
    rollout = batch.rollout
    with torch.no_grad():
        old = agent.logprobs(rollout)  # what the trainer scores: its own log-probs, no drift
    agent._sampling_logp = None
    mask = agent.loss_mask(batch).float()
    advantages = agent.batch_advantages(batch).flatten()
    weight, trl_metrics = trl_sampling_correction(old, rollout.sampling_logprobs, mask, **options)
    assert (weight != 1).any() and (weight == 1.3).any()  # the drift reached the weights, the cap acted
    trl_loss, _ = trl_compute_loss(
        old.clone(), None, advantages, mask, importance_sampling_ratio=weight,
        max_completion_length=agent.config.max_new_tokens, beta=0.0, **options,
    )  # fmt: skip
    trl_plain, _ = trl_compute_loss(
        old.clone(), None, advantages, mask, max_completion_length=agent.config.max_new_tokens, beta=0.0
    )
    metrics = agent.update(batch)
    plain_metrics = plain.agent.update(batch)
    print(
        f"\nENGINE loss ours {metrics['loss']:.6g} TRL {float(trl_loss):.6g} (uncorrected {float(trl_plain):.6g})"
    )
    # on-policy the clipped loss is -mean(advantage) ~ 0; the correction's share is what is compared
    assert metrics["loss"] == pytest.approx(float(trl_loss), rel=1e-3, abs=1e-8)
    assert plain_metrics["loss"] == pytest.approx(float(trl_plain), abs=1e-6)  # both ~ 0: float noise
    assert abs(float(trl_loss - trl_plain)) > 1e-4  # the correction changed the objective
    for name in SHARED_METRICS:
        assert metrics[name] == pytest.approx(trl_metrics[name], abs=1e-5), name
    moved = [
        not torch.equal(a, b)
        for a, b in zip(agent.policy.model.parameters(), plain.agent.policy.model.parameters())
    ]
    assert any(moved)  # the same batch, another update


class SilentEngine(DriftingEngine):
    """An engine that gives no sampling log-probs: vLLM's case at a temperature other than 1."""

    def generate(self, observations, num_samples, sampling, observation_seeds=None) -> Rollout:
        rollout = self.fast.generate(observations, num_samples, sampling, observation_seeds=observation_seeds)
        rollout.sampling_logprobs = None
        return rollout


def test_an_engine_without_logprobs_leaves_it_off_with_one_warning(tiny_model_dir, tmp_path):
    from tests.agents.support import make_trainer

    trainer = make_trainer(
        "grpo", tiny_model_dir, tmp_path, total_steps=1, beta=0.0, vllm_importance_sampling_correction=True
    )
    trainer.agent.engine = SilentEngine(trainer.agent.policy)
    batch = trainer.collect(0)
    assert batch.rollout.sampling_logprobs is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = trainer.agent.update(batch)
        trainer.agent.update(batch)
    said = [w for w in caught if "no sampling log-probs" in str(w.message)]
    assert len(said) == 1
    assert "sampling/importance_sampling_ratio/mean" not in metrics


@pytest.mark.parametrize("mode", MODES)
def test_with_the_transformers_engine_on_policy_the_correction_is_nothing(tiny_model_dir, tmp_path, mode):
    """The transformers engine's sampling log-probs are the trainer's up to float reordering: on-policy the
    weight is 1 to 1e-5 and the corrected update's loss that of the uncorrected one, no warning."""
    from tests.agents.support import make_trainer

    runs = []
    for correction in (False, True):
        trainer = make_trainer(
            "grpo", tiny_model_dir, tmp_path / str(correction), total_steps=1, beta=0.0,
            rollout_engine="transformers", vllm_importance_sampling_correction=correction,
            vllm_importance_sampling_mode=mode,
        )  # fmt: skip
        batch = trainer.collect(0)
        assert batch.rollout.sampling_logprobs is not None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "no sampling log-probs" would raise
            runs.append(trainer.agent.update(batch))
    plain, corrected = runs
    assert corrected["sampling/importance_sampling_ratio/mean"] == pytest.approx(1.0, abs=1e-5)
    assert corrected["sampling/sampling_logp_difference/mean"] < 1e-5
    assert corrected["loss"] == pytest.approx(plain["loss"], abs=1e-6)


@pytest.mark.parametrize("mode", ["token_truncate", "sequence_mask"])
@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_micro_batches_add_up_to_the_whole_batch(loss_type, mode):
    """The weight is per token or per completion, so micro-batches weighed as the update weighs them (the
    loss's mean_over; token shares for the metrics) give the whole batch's loss, gradient and token metrics."""
    logp, old, ref, _, adv, mask = _batch(1)
    engine = _engine_logp(old, mask, 1)
    config = GRPOConfig(
        loss_type=loss_type, beta=0.3, max_new_tokens=6, vllm_importance_sampling_correction=True,
        vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_max=1.5,
    )  # fmt: skip
    settings = config.loss_settings()
    whole_x = logp.clone().requires_grad_(True)
    result = grpo_loss(whole_x, old, adv, mask, settings, ref, sampling_logp=engine)
    result.value.backward()
    chunks = [torch.arange(0, 2), torch.arange(2, 5), torch.arange(5, 6)]
    weights = _chunk_weights(mask, chunks, result.mean_over == "tokens")
    token_weights = _chunk_weights(mask, chunks, True)
    parts_x = logp.clone().requires_grad_(True)
    total, difference = 0.0, 0.0
    for idx, w, tw in zip(chunks, weights, token_weights):
        part = grpo_loss(
            parts_x[idx], old[idx], adv[idx], mask[idx], settings, ref[idx], sampling_logp=engine[idx]
        )
        (part.value * w).backward()
        total += float(part.value) * w
        difference += part.metrics["sampling/sampling_logp_difference/mean"] * tw
    assert total == pytest.approx(float(result.value), abs=1e-6)
    torch.testing.assert_close(parts_x.grad, whole_x.grad)
    assert difference == pytest.approx(result.metrics["sampling/sampling_logp_difference/mean"], abs=1e-6)
