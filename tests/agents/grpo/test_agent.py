"""GRPOAgent's update on the tiny model: the schedule with several iterations per batch; the options."""

import argparse

import pytest

from agents.config import add_arguments, config_from_args
from agents.grpo.advantages import group_advantages
from agents.grpo.config import GRPOConfig
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
