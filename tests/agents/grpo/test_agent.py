"""GRPOAgent's update on the tiny model: the schedule with several iterations per batch; the options."""

import argparse
import math

import pytest
import torch

from agents.config import add_arguments, config_from_args
from agents.grpo.advantages import (
    batch_standardized,
    group_advantages,
    normalized_component_sum,
)
from agents.grpo.config import GRPOConfig
from agents.grpo.variants import high_entropy_mask
from tests.agents.support import make_trainer


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (dict(lr_scheduler="linear"), [1.0, 0.75, 0.5, 0.25]),  # 1 - step / 4
        (dict(lr_scheduler="constant", warmup_steps=2), [0.5, 1.0, 1.0, 1.0]),  # (step + 1) / 2, then 1
    ],
)
def test_the_schedule_advances_once_per_rollout_batch(schedule, expected, tiny_model_dir, tmp_path):
    """With 2 iterations per batch, both train at the batch's rate, and that rate is the one logged."""
    trainer = make_trainer(
        "grpo",
        tiny_model_dir,
        tmp_path,
        num_iterations=2,
        total_steps=4,
        learning_rate=1.0,
        beta=0.0,
        **schedule,
    )
    agent = trainer.agent
    used: list[float] = []
    agent.optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    logged = [agent.update(trainer.collect(step))["learning_rate"] for step in range(4)]
    assert used == pytest.approx([rate for rate in expected for _ in range(2)])
    assert logged == pytest.approx(expected)


def test_batch_scaled_advantages_reach_the_update(tiny_model_dir, tmp_path):
    trainer = make_trainer("grpo", tiny_model_dir, tmp_path, scale_rewards="batch", prompts_per_step=3)
    batch = trainer.collect(0)
    metrics = trainer.agent.update(batch)
    expected = group_advantages(batch.rewards, scale="batch").abs().mean()
    assert metrics["advantage_abs_mean"] == pytest.approx(float(expected), rel=1e-6)
    assert metrics["advantage_abs_mean"] != pytest.approx(float(group_advantages(batch.rewards).abs().mean()))


def test_the_options_from_the_command_line():
    parser = argparse.ArgumentParser()
    add_arguments(parser, GRPOConfig)
    args = parser.parse_args(["--scale-rewards", "batch", "--use-bias-correction-kl", "true"])
    config = config_from_args(GRPOConfig, args)
    assert config.scale_rewards == "batch" and config.loss_settings().bias_correction_kl is True
    defaults = GRPOConfig()
    assert defaults.scale_rewards == "group" and defaults.loss_settings().bias_correction_kl is False  # paper
    # the former boolean, e.g. from an older run's config: the same maths under its new name
    assert GRPOConfig(scale_rewards=False).scale_rewards == "none"
    assert GRPOConfig(scale_rewards=True).scale_rewards == "group"
    with pytest.raises(
        ValueError, match=r"scale_rewards \(--scale-rewards\) must be one of group, batch, none"
    ):
        GRPOConfig(scale_rewards="std")
    with pytest.raises(SystemExit):
        parser.parse_args(["--scale-rewards", "false"])


def test_top_entropy_quantile_trains_on_the_high_entropy_tokens(tiny_model_dir, tmp_path):
    """The entropies come from the training forward itself: the log-probs are those of the plain pass, the
    entropies those of softmax(logits / temperature), and the update keeps about the top fraction."""
    trainer = make_trainer(
        "grpo",
        tiny_model_dir,
        tmp_path,
        top_entropy_quantile=0.5,
        loss_type="dapo",
        beta=0.0,
        max_new_tokens=6,
    )
    agent, batch = trainer.agent, trainer.collect(0)
    rollout, mask = batch.rollout, batch.rollout.completion_mask.float()
    with torch.no_grad():
        logp, entropies = agent.policy.completion_logprobs(rollout, temperature=1.0, with_entropy=True)
        plain = agent.policy.completion_logprobs(rollout, temperature=1.0)
    torch.testing.assert_close(logp, plain)
    assert (entropies[mask.bool()] > 0).all() and (entropies[~mask.bool()] == 0).all()
    # a random tiny model is near-uniform: each entropy is at most log V, the uniform distribution's
    vocab = agent.policy.model.lm_head.out_features
    assert float(entropies.max()) <= math.log(vocab) + 1e-4
    metrics = agent.update(batch)
    expected = float(high_entropy_mask(entropies, mask, 0.5).sum() / mask.sum())
    assert metrics["learn_fraction"] == pytest.approx(expected, abs=1e-6)
    assert 0.4 <= metrics["learn_fraction"] <= 0.75


def test_mask_truncated_completions_leaves_out_the_cut_answers(tiny_model_dir, tmp_path):
    """A random tiny model never stops within 2 tokens: every answer is cut but the one given a stop token."""
    trainer = make_trainer(
        "grpo", tiny_model_dir, tmp_path, mask_truncated_completions=True, max_new_tokens=2
    )
    agent, batch = trainer.agent, trainer.collect(0)
    rollout = batch.rollout
    assert rollout.completion_mask.sum(1).tolist() == [2] * 6  # none stopped by itself
    rollout.completion_ids[3, 1] = agent.policy.stop_token_ids[0]  # answer 3 now ends with a stop token
    kept = agent.loss_mask(batch)
    assert kept.sum(1).tolist() == [0, 0, 0, 2, 0, 0]
    metrics = agent.update(batch)  # learns from answer 3 alone
    assert metrics["grad_norm"] > 0
    off = make_trainer("grpo", tiny_model_dir, tmp_path / "off", max_new_tokens=2).agent
    assert torch.equal(off.loss_mask(batch), rollout.completion_mask)


def test_normalize_then_sum_reads_the_reward_components(tiny_model_dir, tmp_path):
    """GDPO's advantages reach the update: from the env's components, not from the (length-bonused) reward."""
    weights = {"format": 1.0, "exact": 2.0}
    trainer = make_trainer(
        "grpo",
        tiny_model_dir,
        tmp_path,
        multi_objective_aggregation="normalize_then_sum",
        reward_weights=weights,
    )
    batch = trainer.collect(0)
    # the random model's answers all score 0: give them components by hand, as a task's scorer would
    values = [[(1.0, 0.0), (1.0, 1.0), (0.0, 0.0)], [(1.0, 1.0), (1.0, 1.0), (1.0, 0.0)]]
    for group, row in zip(batch.groups, values):
        for info, (form, exact) in zip(group.infos, row):
            info["reward_components"] = {"format": form, "exact": exact, "n_pred": 7.0}
    expected = batch_standardized(normalized_component_sum(torch.tensor(values), torch.tensor([1.0, 2.0])))
    assert expected.abs().min() > 0.1
    torch.testing.assert_close(trainer.agent.batch_advantages(batch), expected)
    metrics = trainer.agent.update(batch)
    assert metrics["advantage_abs_mean"] == pytest.approx(float(expected.abs().mean()), abs=1e-6)
