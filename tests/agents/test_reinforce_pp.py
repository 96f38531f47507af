"""REINFORCE++ (agents/reinforce_pp.py): its maths by hand, equal to verl 0.9.1's own functions on the same
tensors, and trained through the ``perception-r1`` console script like the other registered agents."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.config import SetupError
from agents.reinforce_pp import (
    KL_PENALTIES,
    LOSS_AGG_MODES,
    ReinforcePPAgent,
    ReinforcePPConfig,
    clipped_policy_loss,
    discounted_returns,
    kl_penalty,
    reinforce_pp_advantages,
    token_rewards,
    whiten,
)
from tests.agents.support import train_args
from tests.verl_venv import verl_python

CONSOLE = Path(sys.executable).with_name("perception-r1")


# ----------------------------------------------------------------------------------------- by hand
def test_the_score_lands_on_the_last_token_and_the_kl_on_every_token():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    kl = torch.tensor([[0.2, 0.4, 9.0], [0.2, 9.0, 9.0], [9.0, 9.0, 9.0]])  # 9: outside the mask, unused
    got = token_rewards(torch.tensor([1.0, 0.0, 5.0]), mask, kl, beta=0.5)
    # answer 0: -0.5 x 0.2, then 1 - 0.5 x 0.4; answer 1: its one token; answer 2 has no token: no reward
    torch.testing.assert_close(got, torch.tensor([[-0.1, 0.8, 0.0], [-0.1, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(
        token_rewards(torch.tensor([1.0, 0.0, 5.0]), mask, kl, beta=0.0)[0], torch.tensor([0, 1, 0.0])
    )


def test_hand_computed_returns_and_whitened_advantages():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # gamma 1: returns 1, 1 | 0 -> mean 2/3, unbiased variance ((1/3)^2 x 2 + (2/3)^2) / 2 = 1/3
    torch.testing.assert_close(discounted_returns(rewards, mask, 1.0), torch.tensor([[1.0, 1, 0], [0, 0, 0]]))
    third = math.sqrt(3) / 3
    expected = torch.tensor([[third, third, 0.0], [-2 * third, 0.0, 0.0]])
    torch.testing.assert_close(reinforce_pp_advantages(rewards, mask, 1.0), expected)
    # gamma 0.5: returns 0.5, 1 | 0 -> mean 0.5, variance 0.25 -> 0, 1 | -1
    torch.testing.assert_close(
        reinforce_pp_advantages(rewards, mask, 0.5), torch.tensor([[0.0, 1, 0], [-1, 0, 0]])
    )


def test_a_gap_in_the_mask_carries_the_return_past_it():
    rewards = torch.tensor([[0.5, 7.0, 1.0]])  # the middle token is masked out: its reward is never counted
    got = discounted_returns(rewards, torch.tensor([[1, 0, 1]]), gamma=0.5)
    torch.testing.assert_close(got, torch.tensor([[0.5 + 0.5 * 1.0, 0.0, 1.0]]))


def test_hand_computed_baseline_variant():
    # two groups of two answers, two tokens each: sums 1, 0 | 1, 1 -> centred 0.5, -0.5 | 0, 0 on each token;
    # eight tokens, mean 0, unbiased variance 4 x 0.25 / 7 = 1/7
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    got = reinforce_pp_advantages(rewards, torch.ones(4, 2), group_size=2)
    half = 0.5 * math.sqrt(7)
    torch.testing.assert_close(got, torch.tensor([[half, half], [-half, -half], [0.0, 0.0], [0.0, 0.0]]))
    # a group of one keeps its own sum (verl: its mean is taken as 0)
    alone = reinforce_pp_advantages(torch.tensor([[0.0, 1.0], [0.0, 3.0]]), torch.ones(2, 2), group_size=1)
    torch.testing.assert_close(alone, whiten(torch.tensor([[1.0, 1.0], [3.0, 3.0]]), torch.ones(2, 2)))


def test_whitening_is_over_every_ranks_tokens():
    """Two ranks' halves, each whitened with ``total`` adding the other rank's statistic (what
    ``Parallel.all_sum`` returns), equal the whole batch whitened at once."""
    g = torch.Generator().manual_seed(3)
    values, mask = torch.randn(4, 5, generator=g), (torch.rand(4, 5, generator=g) > 0.3).float()
    whole = whiten(values, mask)
    mean = (values * mask).sum() / mask.sum()
    halves = [(values[:2], mask[:2]), (values[2:], mask[2:])]
    for rank, (v, m) in enumerate(halves):
        ov, om = halves[1 - rank]  # the other rank's: its token count, sum, and squares about the global mean
        theirs = iter([om.sum(), (ov * om).sum(), ((ov - mean).square() * om).sum()])
        got = whiten(v, m, total=lambda mine, theirs=theirs: mine + next(theirs))
        torch.testing.assert_close(got, whole[2 * rank : 2 * rank + 2])


def test_fewer_than_two_tokens_whiten_to_zero_not_nan():
    assert torch.equal(whiten(torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 0.0]])), torch.zeros(1, 2))
    assert torch.equal(whiten(torch.tensor([[3.0]]), torch.tensor([[0.0]])), torch.zeros(1, 1))


def test_hand_computed_kl_penalties():
    logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]])  # log p - log q = 0.5
    assert float(kl_penalty(logp, ref, "kl")) == pytest.approx(0.5)
    assert float(kl_penalty(ref, logp, "abs")) == pytest.approx(0.5)
    assert float(kl_penalty(logp, ref, "mse")) == pytest.approx(0.125)
    assert float(kl_penalty(logp, ref, "low_var_kl")) == pytest.approx(math.exp(-0.5) + 0.5 - 1)
    # a log-ratio of -100 is bounded at -20 (k3 = e^-20 + 20 - 1 = 19), then the estimate at 10, as verl
    assert float(kl_penalty(torch.tensor([[0.0]]), torch.tensor([[-100.0]]), "k3")) == 10.0
    with pytest.raises(ValueError, match="kl_penalty must be one of"):
        kl_penalty(logp, ref, "k4")


def test_hand_computed_clipped_loss():
    config = ReinforcePPConfig()
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    # ratios 1, 2 (clipped at 1.2 for A > 0), 1, 5 (A < 0: -A x 5 = 5 capped by the dual clip at 3)
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.0, 2.0, 1.0, 5.0]])).requires_grad_(True)
    per_token, clipped = clipped_policy_loss(logp, old, advantages, torch.ones(1, 4), config)
    torch.testing.assert_close(per_token.detach(), torch.tensor([[-1.0, -1.2, 1.0, 3.0]]))
    assert clipped.tolist() == [[False, True, False, False]]
    per_token.sum().backward()
    # d(-A rho)/d logp = -A rho where nothing clips; zero where a clip acts
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))


def test_bad_options_are_refused():
    with pytest.raises(SetupError, match="gamma"):
        ReinforcePPConfig(gamma=1.5)
    with pytest.raises(SetupError, match="clip_ratio_c"):
        ReinforcePPConfig(clip_ratio_c=1.0)
    with pytest.raises(SetupError, match="adv_estimator"):
        ReinforcePPConfig(adv_estimator="gae")
    with pytest.raises(ValueError, match="NaN"):
        token_rewards(torch.tensor([float("nan")]), torch.ones(1, 2), None, 0.0)
    with pytest.raises(ValueError, match="not groups of 3"):
        reinforce_pp_advantages(torch.zeros(4, 2), torch.ones(4, 2), group_size=3)
    assert ReinforcePPConfig(beta=0).uses_reference is False and ReinforcePPConfig().uses_reference is True


# ------------------------------------------------------------------------------------ against verl
@pytest.fixture(scope="module")
def verl_results(tmp_path_factory):
    """verl 0.9.1's functions on :func:`parity_inputs`, run by .venv-verl (verl is not importable here).

    It builds the venv itself, as test_verl_install does, so a fresh clone runs this comparison instead of
    skipping it for a venv another test builds later."""
    verl = verl_python()  # builds .venv-verl once (a few minutes); skips, with pip's error, if it cannot
    folder = tmp_path_factory.mktemp("verl")
    given = parity_inputs()
    torch.save(given, folder / "in.pt")
    done = subprocess.run(
        [str(verl), str(Path(__file__).with_name("verl_reinforce_pp.py")), folder / "in.pt", folder / "out.pt"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return given, torch.load(folder / "out.pt", weights_only=True)


def parity_inputs() -> dict:
    """B=3 observations x G=4 answers of up to 7 tokens (right-padded, 1 to 7 of them), log-probs of the
    policy that sampled, the reference and the policy being trained all different."""
    g = torch.Generator().manual_seed(0)
    n, t = 12, 7
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = (torch.arange(t) < lengths[:, None]).float()
    old = -torch.rand(n, t, generator=g) * 3
    gap_mask = mask.clone()
    gap_mask[:, 2] = 0  # a masked span inside each answer (verl carries the return over it)
    gap_mask[:, 0] = 1
    return {
        "mask": mask,
        "scores": torch.rand(n, generator=g).round(decimals=1),
        "old_logp": old,
        "ref_logp": old + 0.5 * torch.randn(n, t, generator=g),
        "logp": old + 0.3 * torch.randn(n, t, generator=g),
        "loss_advantages": torch.randn(n, t, generator=g),
        "gap_mask": gap_mask,
        "gap_rewards": torch.randn(n, t, generator=g),
        "index": [str(i // 4) for i in range(n)],  # verl's uid of each answer's prompt: groups of 4
        "beta": 0.05,
        "gammas": [1.0, 0.9],
        "kl_penalties": list(KL_PENALTIES),
        "loss_agg_modes": list(LOSS_AGG_MODES),
        "clip": {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0},
    }


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@pytest.mark.slow
def test_advantages_equal_verls_on_the_same_tensors(verl_results):
    given, verl = verl_results
    mask, worst = given["mask"], 0.0
    for kind in given["kl_penalties"]:
        kl = kl_penalty(given["old_logp"], given["ref_logp"], kind)
        rewards = token_rewards(given["scores"], mask, kl, given["beta"])
        worst = max(worst, max_difference(rewards, verl[f"token_rewards/{kind}"]))
        for gamma in given["gammas"]:
            ours = reinforce_pp_advantages(rewards, mask, gamma)
            worst = max(worst, max_difference(ours, verl[f"advantages/{kind}/{gamma}"]))
        baseline = reinforce_pp_advantages(rewards, mask, group_size=4)
        worst = max(worst, max_difference(baseline, verl[f"baseline/{kind}"]))
    for gamma in given["gammas"]:
        ours = reinforce_pp_advantages(given["gap_rewards"], given["gap_mask"], gamma)
        worst = max(worst, max_difference(ours, verl[f"gap/{gamma}"]))
    print(f"REINFORCE++ advantages vs verl 0.9.1: max |difference| {worst:.2e}")
    assert worst < 1e-5
    assert verl["advantages/kl/1.0"].abs().max() > 0.5  # not a comparison of zeros


@pytest.mark.slow
def test_loss_and_gradient_equal_verls_on_the_same_tensors(verl_results):
    given, verl = verl_results
    mask, worst = given["mask"], 0.0
    clip = given["clip"]
    for mode in given["loss_agg_modes"]:
        config = ReinforcePPConfig(
            loss_agg_mode=mode, clip_ratio_low=clip["clip_ratio_low"], clip_ratio_high=clip["clip_ratio_high"],
            clip_ratio_c=clip["clip_ratio_c"], beta=0,
        )  # fmt: skip
        agent = object.__new__(ReinforcePPAgent)  # the loss reads only the options
        agent.config = config
        logp = given["logp"].clone().requires_grad_(True)
        out = agent.loss(logp, given["loss_advantages"], mask, given["old_logp"], None)
        out.value.backward()
        worst = max(worst, max_difference(out.value.detach(), verl[f"loss/{mode}"]))
        worst = max(worst, max_difference(logp.grad, verl[f"grad/{mode}"]))
        assert out.metrics["clip_fraction"] == pytest.approx(float(verl[f"clipfrac/{mode}"]), abs=1e-6)
        assert out.mean_over == ("tokens" if mode == "token-mean" else "answers")
    print(f"REINFORCE++ loss and gradient vs verl 0.9.1: max |difference| {worst:.2e}")
    assert worst < 1e-5


# --------------------------------------------------------------------------------- as users run it
def test_the_registry_names_it_and_train_help_lists_its_options():
    from agents.registry import AGENTS, resolve_agent

    assert AGENTS["reinforce_pp"] is ReinforcePPAgent and resolve_agent("reinforce_pp") is ReinforcePPAgent
    done = subprocess.run(
        [str(CONSOLE), "train", "--agent", "reinforce_pp", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--adv-estimator", "--kl-penalty", "--gamma", "--clip-ratio-c", "--loss-agg-mode"):
        assert flag in done.stdout, flag


def test_perception_r1_trains_it_two_steps_with_the_kl_in_the_reward(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = train_args(tiny_model_dir, tmp_path, "rpp", "--agent", "reinforce_pp", "--total-steps", "2",
                      "--beta", "0.05", "--kl-penalty", "low_var_kl", "--log-every", "1")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([str(CONSOLE), *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = tmp_path / "rpp"
    assert (run / "checkpoints" / "step-000002" / "policy").is_dir()
    events = EventAccumulator(str(run)).Reload()
    logged = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert len(logged["train/loss"]) == 2 and all(math.isfinite(v) for v in logged["train/loss"])
    # the reward's KL was taken against the reference: 0 at the first step, whose policy is the reference
    assert len(logged["train/kl"]) == 2 and logged["train/kl"][0] == pytest.approx(0.0, abs=1e-6)
    assert all(math.isfinite(v) for v in logged["train/kl"] + logged["train/advantage_abs_mean"])


@pytest.mark.slow
def test_two_ranks_whiten_over_the_global_batch_as_one_process(tiny_model_dir, tmp_path):
    """DDP over 2 gloo ranks gives one process's weights: the mean and std of the returns are the global
    batch's (``Parallel.all_sum``), not each rank's half; the KL in the reward and micro-batches included."""
    from tests.agents.support import TRAIN, checkpoint_weights, launch

    options = [a for a in TRAIN if a not in ("--loss-type", "dapo")]  # dapo: a GRPO loss type
    args = [
        "train",
        "--agent",
        "reinforce_pp",
        *options,
        "--model",
        tiny_model_dir,
        "--output-dir",
        str(tmp_path),
    ]
    launch([*args, "--run-name", "one"], 1)
    log = launch([*args, "--run-name", "ddp", "--parallel", "ddp"], 2)
    assert "data-parallel: ddp over 2 ranks" in log
    one, two = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "ddp")
    start = checkpoint_weights(tmp_path / "one", step=1)
    assert max(float((one[k] - start[k]).abs().max()) for k in one) > 1e-5  # training moved them
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=1e-5, msg=key)
