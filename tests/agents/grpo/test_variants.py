"""GRPO's variants against TRL 1.16's own code on identical tensors, and their options.

Each parity case runs our ``grpo_loss`` and TRL's real ``GRPOTrainer._compute_loss``
(``tests/agents/grpo/trl_reference.py``) on the same log-probs, advantages and mask: the loss, its
gradient with respect to the log-probs and the logged metrics must agree (max |difference| printed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from agents.base import Agent
from agents.config import SetupError, add_arguments, config_from_args
from agents.distributed import Parallel
from agents.grpo.advantages import batch_standardized, component_rewards, normalized_component_sum
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import LossSettings, grpo_loss
from agents.grpo.variants import high_entropy_mask, truncated_completions
from agents.policies.shared_prefix import token_logprobs
from agents.rollout import EpisodeGroup
from tests.agents.grpo.trl_reference import trl_compute_loss, trl_config
from tests.agents.support import train_help

# our metric -> TRL's name for it (TRL's clip_ratio/low_min and high_max are minima/maxima over completions,
# which do not add over micro-batches; they are not logged here)
TRL_METRIC = {
    "clip_fraction": "clip_ratio/region_mean",
    "clip_fraction_low": "clip_ratio/low_mean",
    "clip_fraction_high": "clip_ratio/high_mean",
    "cispo_clip_fraction": "cispo_clip_ratio",
    "vespo_phi_mean": "vespo/phi_seq_mean",
    "kl": "kl",
}


def _batch(seed: int = 0):
    """6 completions of 1 to 6 tokens (T = 6), off-policy ratios spread over about 0.5..2, mixed advantages."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([3, 6, 1, 2, 5, 4])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).float()
    logp = -2 * torch.rand(6, 6, generator=g)
    old = logp + 1.4 * (torch.rand(6, 6, generator=g) - 0.5)
    ref = logp - 0.5 * torch.rand(6, 6, generator=g)
    entropies = 3 * torch.rand(6, 6, generator=g)
    adv = torch.tensor([1.0, -0.5, 2.0, -2.5, 0.7, -1.2])
    return logp * mask, old * mask, ref * mask, entropies * mask, adv, mask


def _loss_and_grad(config: GRPOConfig, logp, old, adv, mask, ref=None, learn_mask=None, **extra):
    """Our loss under ``config`` on a fresh leaf copy of ``logp``: (loss, d loss / d logp [N, T], metrics);
    ``extra``: grpo_loss's keyword inputs (sampling_logp, entropies)."""
    x = logp.clone().requires_grad_(True)
    loss, metrics = grpo_loss(x, old, adv, mask, config.loss_settings(), ref, learn_mask, **extra)
    loss.backward()
    return loss.detach(), x.grad, metrics


# (our GRPOConfig options, TRL's GRPOConfig options for the same maths); T = 6 = max_completion_length
CASES = {
    "grpo": ({"loss_type": "grpo"}, {"loss_type": "grpo"}),
    "dapo": ({"loss_type": "dapo"}, {"loss_type": "dapo"}),
    "dr_grpo": ({"loss_type": "dr_grpo"}, {"loss_type": "dr_grpo"}),
    "bnpo": ({"loss_type": "bnpo"}, {"loss_type": "bnpo"}),
    "cispo": ({"loss_type": "cispo", "epsilon_high": 1.3}, {"loss_type": "cispo", "epsilon_high": 1.3}),
    "sapo": ({"loss_type": "sapo"}, {"loss_type": "sapo"}),
    "luspo": (
        {"loss_type": "luspo", "importance_sampling_level": "sequence"},
        {"loss_type": "luspo", "importance_sampling_level": "sequence"},
    ),
    "vespo": ({"loss_type": "vespo"}, {"loss_type": "vespo"}),
    "gspo (sequence, grpo)": (
        {
            "loss_type": "grpo",
            "importance_sampling_level": "sequence",
            "epsilon_low": 3e-4,
            "epsilon_high": 4e-4,
        },
        {"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
    ),
    "sequence, dapo": (
        {"loss_type": "dapo", "importance_sampling_level": "sequence"},
        {"loss_type": "dapo", "importance_sampling_level": "sequence"},
    ),
    "delta (grpo)": ({"loss_type": "grpo", "delta": 1.3}, {"loss_type": "grpo", "delta": 1.3}),
    "delta (dapo)": ({"loss_type": "dapo", "delta": 1.3}, {"loss_type": "dapo", "delta": 1.3}),
    "top_entropy_quantile (grpo)": (
        {"loss_type": "grpo", "top_entropy_quantile": 0.3},
        {"loss_type": "grpo", "top_entropy_quantile": 0.3},
    ),
    "top_entropy_quantile 0 (dapo)": (
        {"loss_type": "dapo", "top_entropy_quantile": 0.0},
        {"loss_type": "dapo", "top_entropy_quantile": 0.0},
    ),
    "sapo temperatures": (
        {"loss_type": "sapo", "sapo_temperature_pos": 0.5, "sapo_temperature_neg": 2.0},
        {"loss_type": "sapo", "sapo_temperature_pos": 0.5, "sapo_temperature_neg": 2.0},
    ),
    "vespo k, lambda": (
        {"loss_type": "vespo", "vespo_k_pos": 1.0, "vespo_lambda_pos": 0.5, "vespo_k_neg": 4.0},
        {"loss_type": "vespo", "vespo_k_pos": 1.0, "vespo_lambda_pos": 0.5, "vespo_k_neg": 4.0},
    ),
}


def _ours(options: dict, logp, old, ref, entropies, adv, mask, beta: float, bias_correction: bool):
    config = GRPOConfig(max_new_tokens=6, beta=beta, use_bias_correction_kl=bias_correction, **options)
    learn_mask = None
    if config.top_entropy_quantile < 1:
        learn_mask = high_entropy_mask(entropies, mask, config.top_entropy_quantile)
    return _loss_and_grad(config, logp, old, adv, mask, ref if beta else None, learn_mask)


def _trls(options: dict, logp, old, ref, entropies, adv, mask, beta: float, bias_correction: bool):
    x = logp.clone().requires_grad_(True)
    loss, metrics = trl_compute_loss(
        x, old, adv, mask, ref if beta else None, entropies,
        max_completion_length=6, beta=beta, use_bias_correction_kl=bias_correction, **options,
    )  # fmt: skip
    loss.backward()
    return loss.detach(), x.grad, metrics


def parity(case: str, beta: float = 0.0, bias_correction: bool = False, seed: int = 0) -> dict[str, float]:
    """Max |difference| of loss, gradient and each shared metric between ours and TRL's on one batch."""
    ours_options, trl_options = CASES[case]
    tensors = _batch(seed)
    loss, grad, metrics = _ours(ours_options, *tensors, beta, bias_correction)
    trl_loss, trl_grad, trl_metrics = _trls(trl_options, *tensors, beta, bias_correction)
    shared = {name: TRL_METRIC[name] for name in metrics if name in TRL_METRIC}
    assert set(shared.values()) == {n for n in trl_metrics if n in TRL_METRIC.values()}, (
        metrics,
        trl_metrics,
    )
    return {
        "loss": abs(float(loss - trl_loss)),
        "grad": float((grad - trl_grad).abs().max()),
        "metrics": max(
            [abs(metrics[ours] - trl_metrics[theirs]) for ours, theirs in shared.items()], default=0.0
        ),
        "clipping acted": metrics.get("clip_fraction", metrics.get("cispo_clip_fraction", 0.0)),
    }


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("beta, bias_correction", [(0.0, False), (0.3, True)])
def test_loss_gradient_and_metrics_are_trls(case, beta, bias_correction):
    worst = {"loss": 0.0, "grad": 0.0, "metrics": 0.0}
    for seed in range(3):
        found = parity(case, beta, bias_correction, seed)
        worst = {k: max(worst[k], found[k]) for k in worst}
    print(f"\nPARITY {case} beta={beta}: max |diff| loss {worst['loss']:.3g} grad {worst['grad']:.3g} "
          f"metrics {worst['metrics']:.3g}")  # fmt: skip
    assert worst["loss"] <= 1e-6 and worst["grad"] <= 1e-6 and worst["metrics"] <= 1e-6, worst


def test_the_cases_exercise_what_they_test():
    """Clipping and the cap act on this batch (else the parity of clip fractions would be 0 = 0)."""
    tensors = _batch(0)
    _, _, metrics = _ours(CASES["grpo"][0], *tensors, 0.0, False)
    assert 0.1 < metrics["clip_fraction"] < 0.9
    _, _, cispo = _ours(CASES["cispo"][0], *tensors, 0.0, False)
    assert cispo["cispo_clip_fraction"] > 0
    _, plain, _ = _ours(CASES["grpo"][0], *tensors, 0.0, False)
    _, capped, _ = _ours(CASES["delta (grpo)"][0], *tensors, 0.0, False)
    assert not torch.equal(plain, capped)  # delta changed some gradient
    _, _, gspo = _ours(CASES["gspo (sequence, grpo)"][0], *tensors, 0.0, False)
    assert 0 < gspo["clip_fraction"] < 1  # one value per completion: a multiple of 1/6
    assert gspo["clip_fraction"] * 6 == pytest.approx(round(gspo["clip_fraction"] * 6))
    _, _, top = _ours(CASES["top_entropy_quantile (grpo)"][0], *tensors, 0.0, False)
    assert 0.25 < top["learn_fraction"] < 0.4


def test_mask_truncated_completions_is_trls():
    """Which completions TRL leaves out (its test on the unpadded ids), and the loss TRL then computes."""
    pad, stops = 0, [7, 8]
    ids = torch.tensor([[5, 7, 0, 0], [5, 5, 5, 5], [8, 0, 0, 0], [5, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    ours = truncated_completions(ids, mask, [*stops, pad])
    as_lists = [row[: int(m.sum())].tolist() for row, m in zip(ids, mask)]
    theirs = torch.tensor([row[-1] not in [*stops, pad] for row in as_lists])  # grpo_trainer.py l. 2490
    assert ours.tolist() == theirs.tolist() == [False, True, False, True]
    kept = (mask * (~ours).unsqueeze(1)).float()
    logp, old = -torch.rand(4, 4) * kept, -torch.rand(4, 4) * kept
    for loss_type in ("grpo", "dapo"):
        ours_loss, _ = grpo_loss(
            logp, old, torch.tensor([1.0, -1, 2, 1]), kept, LossSettings(loss_type=loss_type, beta=0)
        )
        trl_loss, _ = trl_compute_loss(logp, old, torch.tensor([1.0, -1, 2, 1]), kept, loss_type=loss_type)
        assert abs(float(ours_loss - trl_loss)) <= 1e-7


def test_truncation_by_hand():
    # rows: stopped at 9; cut (last token 4); empty (nothing to leave out); stopped at pad 0
    ids = torch.tensor([[3, 9, 0], [3, 4, 4], [0, 0, 0], [3, 0, 0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0]])
    assert truncated_completions(ids, mask, [9, 0]).tolist() == [False, True, False, False]


def _chunk_weights(mask, chunks, token_level):
    """Agent.chunk_weights of a one-process run (it reads only ``parallel``)."""
    return Agent.chunk_weights(SimpleNamespace(parallel=Parallel.single()), mask, chunks, token_level)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo", "cispo", "sapo", "luspo", "vespo"])
def test_micro_batches_add_up_to_the_whole_batch(loss_type):
    """Summed with the weights the update gives them (token shares for dapo, cispo, vespo; completion
    shares for the others), micro-batches' losses and gradients are the whole batch's."""
    logp, old, ref, _, adv, mask = _batch(1)
    options = {"loss_type": loss_type, "beta": 0.3, "max_new_tokens": 6}
    if loss_type == "cispo":
        options["epsilon_high"] = 1.3
    if loss_type == "luspo":
        options["importance_sampling_level"] = "sequence"
    settings = GRPOConfig(**options).loss_settings()
    whole_x = logp.clone().requires_grad_(True)
    result = grpo_loss(whole_x, old, adv, mask, settings, ref)
    whole, _ = result
    whole.backward()
    # the loss says what it is a mean over; the token means of the whole batch are these three
    assert result.mean_over == ("tokens" if loss_type in ("dapo", "cispo", "vespo") else "answers")
    chunks = [torch.arange(0, 2), torch.arange(2, 5), torch.arange(5, 6)]  # unequal sizes and token counts
    weights = _chunk_weights(mask, chunks, result.mean_over == "tokens")
    parts_x = logp.clone().requires_grad_(True)
    total = 0.0
    for idx, w in zip(chunks, weights):
        part, _ = grpo_loss(parts_x[idx], old[idx], adv[idx], mask[idx], settings, ref[idx])
        (part * w).backward()
        total += float(part) * w
    print(f"\nMICRO-BATCHES {loss_type}: |loss diff| {abs(total - float(whole)):.3g}")
    assert total == pytest.approx(float(whole), abs=1e-6)
    torch.testing.assert_close(parts_x.grad, whole_x.grad)


def test_bnpo_is_each_micro_batchs_token_mean_as_in_trl():
    """TRL's bnpo normalises by the tokens of the local batch: over micro-batches it is the completion-share
    weighted mean of each micro-batch's token mean; in one micro-batch it is dapo."""
    logp, old, _, _, adv, mask = _batch(2)
    bnpo, dapo = LossSettings(loss_type="bnpo", beta=0), LossSettings(loss_type="dapo", beta=0)
    assert float(grpo_loss(logp, old, adv, mask, bnpo)[0]) == pytest.approx(
        float(grpo_loss(logp, old, adv, mask, dapo)[0])
    )
    chunks = [torch.arange(0, 3), torch.arange(3, 6)]
    weights = _chunk_weights(
        mask, chunks, token_level=grpo_loss(logp, old, adv, mask, bnpo).mean_over == "tokens"
    )
    assert weights == [0.5, 0.5]
    accumulated = sum(
        w * float(grpo_loss(logp[i], old[i], adv[i], mask[i], bnpo)[0]) for i, w in zip(chunks, weights)
    )
    trl = [float(trl_compute_loss(logp[i], old[i], adv[i], mask[i], loss_type="bnpo")[0]) for i in chunks]
    assert accumulated == pytest.approx(
        sum(trl) / 2, abs=1e-7
    )  # TRL: each micro-batch's loss / accumulation steps
    assert accumulated != pytest.approx(float(grpo_loss(logp, old, adv, mask, dapo)[0]))


def test_high_entropy_mask_by_hand():
    entropies = torch.tensor([[0.1, 0.5, 0.9, 0.0], [0.3, 0.7, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    # real entropies 0.1 0.5 0.9 0.3 0.7: their 0.6-quantile (top 40%) is 0.58; 0 keeps the highest only
    assert high_entropy_mask(entropies, mask, 0.4).tolist() == [
        [False, False, True, False],
        [False, True, False, False],
    ]
    assert high_entropy_mask(entropies, mask, 0.0).sum() == 1
    assert high_entropy_mask(entropies, mask, 1.0).tolist() == mask.bool().tolist()


def trl_normalize_then_sum(rewards_per_func: torch.Tensor, weights: torch.Tensor, num_generations: int):
    """TRL 1.16 GRPOTrainer._generate_and_score_completions, ``normalize_then_sum`` (grpo_trainer.py
    l. 2790-2800, no unscorable completion), restated: it is inline there, not a function one can call."""

    def nanstd(tensor, dim=None, keepdim=False):  # trl.trainer.utils.nanstd
        from trl.trainer.utils import nanstd as trl_nanstd

        return trl_nanstd(tensor, dim=dim, keepdim=keepdim) if dim is not None else trl_nanstd(tensor)

    grouped = rewards_per_func.view(-1, num_generations, rewards_per_func.shape[1])
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = nanstd(grouped, dim=1, keepdim=True)
    reward_k = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, rewards_per_func.shape[1])
    rewards = (reward_k * weights.unsqueeze(0)).nansum(dim=1)
    std_rewards = nanstd(rewards).expand_as(rewards)
    return (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)


def test_normalize_then_sum_is_trls():
    g = torch.Generator().manual_seed(0)
    components = torch.rand(4, 5, 3, generator=g)  # [B, G, K]
    components[1, :, 0] = 1.0  # a unanimous component in one group: it adds 0 there
    weights = torch.tensor([1.0, 0.5, 2.0])
    ours = batch_standardized(normalized_component_sum(components, weights))
    theirs = trl_normalize_then_sum(components.reshape(20, 3), weights, num_generations=5).view(4, 5)
    print(f"\nPARITY normalize_then_sum: max |diff| {float((ours - theirs).abs().max()):.3g}")
    torch.testing.assert_close(ours, theirs)


def test_normalize_then_sum_by_hand():
    # one group of 2: each component standardised to -1/sqrt2, +1/sqrt2 (unbiased std of 2 values: |a-b|/sqrt2)
    components = torch.tensor([[[0.0, 1.0], [1.0, 0.5]]])  # answer 0: format 0, iou 1; answer 1: 1, 0.5
    sums = normalized_component_sum(components, torch.tensor([1.0, 1.0]), eps=0.0)
    torch.testing.assert_close(sums, torch.tensor([[0.0, 0.0]]))  # format's gain cancels iou's loss
    sums = normalized_component_sum(components, torch.tensor([2.0, 1.0]), eps=0.0)
    torch.testing.assert_close(sums, torch.tensor([[-(2**-0.5), 2**-0.5]]))


def test_components_come_from_the_env_info():
    infos = [{"reward_components": {"format": 1.0, "iou": 0.5 * i, "n_pred": 3.0}} for i in range(2)]
    groups = [EpisodeGroup(index=0, observation={}, answers=["a", "b"], rewards=[0.0, 1.0], infos=infos)]
    assert component_rewards(groups, ["iou", "format"]).tolist() == [[[0.0, 1.0], [0.5, 1.0]]]
    with pytest.raises(ValueError, match="does not report: label; it reports format, iou, n_pred"):
        component_rewards(groups, ["label"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"delta": 0.9}, "delta .* must be 0 .off. or > 1"),
        ({"delta": 2.0, "loss_type": "sapo"}, "delta .* which loss_type sapo has not"),
        ({"loss_type": "cispo"}, "cispo caps the ratio itself at epsilon_high"),
        ({"loss_type": "luspo"}, "luspo .* --importance-sampling-level sequence"),
        (
            {"loss_type": "vespo", "importance_sampling_level": "sequence"},
            "vespo .* keep --importance-sampling-level token",
        ),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "needs --reward-weights"),
        ({"multi_objective_aggregation": "normalize_then_sum", "reward_weights": {"f1": "x"}}, "to numbers"),
        ({"reward_weights": {"f1": 1}}, "read by multi_objective_aggregation normalize_then_sum only"),
        ({"top_entropy_quantile": 1.5}, r"top_entropy_quantile \(--top-entropy-quantile\) must be <= 1"),
        ({"loss_type": "ppo"}, "loss_type .* must be one of"),
        ({"importance_sampling_level": "group"}, "must be one of token, sequence"),
        ({"sapo_temperature_neg": 0.0}, "must be > 0"),
    ],
)
def test_impossible_combinations_are_refused_with_a_reason(options, message):
    with pytest.raises(SetupError, match=message):
        GRPOConfig(**options)


def test_defaults_are_trls_where_the_meaning_is_the_same():
    ours, theirs = GRPOConfig(), trl_config()
    same = [
        "importance_sampling_level", "sapo_temperature_pos", "sapo_temperature_neg", "vespo_k_pos",
        "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg", "mask_truncated_completions",
        "top_entropy_quantile", "multi_objective_aggregation", "num_iterations", "scale_rewards",
    ]  # fmt: skip
    assert {n: getattr(ours, n) for n in same} == {n: getattr(theirs, n) for n in same}
    assert ours.delta == 0 and theirs.delta is None  # off (our options are numbers; 0 stands for None)
    assert ours.epsilon_low == theirs.epsilon and ours.epsilon_high == 0.2 and theirs.epsilon_high is None
    # chosen apart, on purpose: the paper's aggregation and KL (Perception-R1), not TRL's dapo, beta 0 and
    # ratio-weighted KL
    assert (ours.loss_type, ours.beta, ours.use_bias_correction_kl) == ("grpo", 0.04, False)
    assert (theirs.loss_type, theirs.beta, theirs.use_bias_correction_kl) == ("dapo", 0.0, True)


def test_the_options_from_the_command_line_and_yaml(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser, GRPOConfig)
    flags = [
        "--loss-type", "cispo", "--epsilon-high", "5", "--importance-sampling-level", "sequence",
        "--mask-truncated-completions", "true", "--top-entropy-quantile", "0.2",
        "--multi-objective-aggregation", "normalize_then_sum", "--reward-weights", '{"format": 1, "iou": 2}',
    ]  # fmt: skip
    config = config_from_args(GRPOConfig, parser.parse_args(flags))
    assert (config.loss_type, config.epsilon_high, config.importance_sampling_level) == (
        "cispo",
        5.0,
        "sequence",
    )
    assert config.mask_truncated_completions and config.top_entropy_quantile == 0.2
    assert config.reward_weights == {"format": 1, "iou": 2}
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("loss_type: dapo\ndelta: 4\nimportance_sampling_level: sequence\n")
    from_yaml = config_from_args(GRPOConfig, parser.parse_args([]), file=str(yaml_file))
    assert (
        from_yaml.loss_settings().delta == 4.0
        and from_yaml.loss_settings().importance_sampling_level == "sequence"
    )
    assert GRPOConfig().loss_settings().delta is None


def test_train_help_lists_the_options_with_their_trl_names():
    """``perception-r1 train --help``, the installed command, as a user reads it."""
    flat = train_help()
    for flag in (
        "--loss-type {grpo,dapo,dr_grpo,bnpo,cispo,sapo,luspo,vespo}", "--delta", "--importance-sampling-level "
        "{token,sequence}", "--mask-truncated-completions", "--top-entropy-quantile", "--sapo-temperature-pos",
        "--vespo-lambda-neg", "--multi-objective-aggregation {sum_then_normalize,normalize_then_sum}",
        "--reward-weights",
    ):  # fmt: skip
        assert flag in flat, flag
    for trl_name in (
        "TRL's loss_type", "TRL's delta", "TRL's importance_sampling_level", "TRL's mask_truncated_completions",
        "TRL's top_entropy_quantile", "TRL's multi_objective_aggregation", "TRL's reward_weights",
        "TRL's epsilon)", "TRL's epsilon_high", "TRL's sapo_temperature_pos", "TRL's sapo_temperature_neg",
        "TRL's vespo_k_pos", "TRL's vespo_lambda_pos", "TRL's vespo_k_neg", "TRL's vespo_lambda_neg",
    ):  # fmt: skip
        assert trl_name in flat, trl_name


@pytest.mark.parametrize("chunk_elements", [10**6, 70, 50])  # one chunk; chunks recomputed in backward
def test_entropies_come_from_the_same_logits(chunk_elements):
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(3, 5, 8, generator=g, requires_grad=True)
    ids = torch.randint(0, 50, (3, 5), generator=g)
    logp, entropies = token_logprobs(
        hidden, ids, head, temperature=0.7, chunk_elements=chunk_elements, with_entropy=True
    )
    log_softmax = torch.log_softmax(head(hidden) / 0.7, dim=-1)
    torch.testing.assert_close(logp, log_softmax.gather(-1, ids.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(entropies, -(log_softmax.exp() * log_softmax).sum(-1))
    # the entropies carry their gradient (the entropy_coef bonus), the plain formula's
    (grad,) = torch.autograd.grad(entropies.sum(), hidden, retain_graph=True)
    plain = -(log_softmax.exp() * log_softmax).sum()
    torch.testing.assert_close(grad, torch.autograd.grad(plain, hidden, retain_graph=True)[0])
    logp.sum().backward()  # the log-probs keep their gradient
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0


def _bare_agent(config: GRPOConfig, entropies: torch.Tensor, parallel) -> GRPOAgent:
    """A GRPOAgent's loss without a model: its options, the micro-batch's entropies and ranks."""
    agent = GRPOAgent.__new__(GRPOAgent)
    agent.config, agent._entropies, agent.parallel = config, entropies, parallel
    return agent


def test_top_entropy_threshold_pools_every_rank():
    """In a data-parallel run the threshold is taken over every rank's tokens of the micro-batch, as TRL
    gathers them: another rank's more uncertain tokens leave none of ours above it."""
    logp, old, _, entropies, adv, mask = _batch(0)  # 21 tokens, entropies < 3
    config = GRPOConfig(loss_type="dapo", top_entropy_quantile=0.5, beta=0.0)
    other_rank = torch.full((30,), 10.0)
    two_ranks = SimpleNamespace(enabled=True, gather_objects=lambda items: [*items, other_rank])
    pooled = _bare_agent(config, entropies, two_ranks)
    _, metrics = GRPOAgent.loss(pooled, logp, adv, mask, old, None)
    assert metrics["learn_fraction"] == 0.0  # the median of 51 values is 10
    alone = _bare_agent(config, entropies, Parallel.single())
    _, metrics = GRPOAgent.loss(alone, logp, adv, mask, old, None)
    assert metrics["learn_fraction"] == pytest.approx(11 / 21)  # the median of our 21 and those above it
    assert alone._entropies is None  # read once: the next micro-batch must bring its own
    with pytest.raises(RuntimeError, match="no entropies"):
        GRPOAgent.loss(alone, logp, adv, mask, old, None)


@pytest.mark.slow
def test_top_entropy_over_two_ranks_is_one_process(tiny_model_dir, tmp_path):
    """2 gloo ranks, each micro-batch its whole shard, pool their entropies for the threshold (torch.distributed,
    not a fake): the same tokens learn as in one process over the whole batch, so the same parameters."""
    from safetensors.torch import load_file

    from tests.agents.support import checkpoint_weights, train_on_ranks

    # OCR: its edit-distance reward scores a random model's text above 0 and unequally, so the policy term
    # (the only one, beta 0) has a signal; what it learns depends on which tokens pass the threshold
    ocr = ("--env", "PerceptionR1/OCR-v0", "--env-kwargs", '{"difficulty": "easy"}', "--beta", "0")
    options = (*ocr, "--top-entropy-quantile", "0.5", "--micro-batch-size", "0")
    train_on_ranks(tiny_model_dir, tmp_path, "one", 1, *options)
    log = train_on_ranks(tiny_model_dir, tmp_path, "two", 2, *options, "--parallel", "ddp")
    assert "data-parallel: ddp over 2 ranks" in log
    one, two = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "two")
    start = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert max(float((one[k] - start[k]).abs().max()) for k in one) > 1e-4  # training moved them
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-6, rtol=1e-5, msg=key)
