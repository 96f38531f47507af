"""agents.build.build_run: the one set-up of a run (the CLI, the examples, the benchmark and the tests use it)."""

import gymnasium as gym
import pytest

from agents.build import build_run
from agents.config import SetupError
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.rloo.config import RLOOConfig
from tests.agents.support import ENV_KWARGS


def config(model: str, **overrides) -> GRPOConfig:
    values = dict(env_kwargs=ENV_KWARGS, model=model, total_steps=1, prompts_per_step=1, group_size=2)
    return GRPOConfig(**{**values, **overrides, "max_new_tokens": 2, "log_samples_every": 0})


def test_a_wrong_env_fails_before_the_model_loads(tiny_model_dir, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the env was checked")

    monkeypatch.setattr("agents.build.QwenVLPolicy.from_pretrained", no_model)
    with pytest.raises(SetupError, match="--env PerceptionR1/Nope-v0"):
        build_run(config(tiny_model_dir, env_id="PerceptionR1/Nope-v0"), run_dir=tmp_path / "run", threads=1)


def test_a_missing_model_folder_is_named(tmp_path):
    with pytest.raises(SetupError, match="no such folder"):
        build_run(config(str(tmp_path / "nope")), run_dir=tmp_path / "run", threads=1)


def test_the_run_holds_one_agent_its_trainer_trains(tiny_model_dir, tmp_path):
    run = build_run(config(tiny_model_dir), run_dir=tmp_path / "run", progress=False, threads=1)
    assert run.trainer.agent is run.agent and run.agent.policy is run.policy
    assert run.run_dir == tmp_path / "run" and run.checkpoint is None
    assert run.agent.spec == "grpo"  # the registered agent whose options the config holds
    assert run.env.spec.id == "PerceptionR1/Counting-v0"


def test_an_agent_class_outside_the_registry_is_named_module_class(tiny_model_dir, tmp_path):
    class Mine(GRPOAgent):
        pass

    run = build_run(config(tiny_model_dir), agent=Mine, run_dir=tmp_path / "run", progress=False, threads=1)
    assert type(run.agent) is Mine and run.agent.spec == f"{__name__}:{Mine.__qualname__}"


@pytest.mark.parametrize(
    "options, reference",
    [
        (config("", beta=0.04), True),
        (config("", beta=0.0), False),
        (RLOOConfig(env_kwargs=ENV_KWARGS, group_size=2, beta=0.1), True),
        (RLOOConfig(env_kwargs=ENV_KWARGS, group_size=2), False),  # RLOO's default: no KL term
    ],
)
def test_a_reference_model_is_loaded_only_for_a_kl_term(options, reference, policies, tmp_path):
    assert options.uses_reference is reference
    env = gym.make(options.env_id, **options.env_kwargs)
    run = build_run(options, policy=policies["qwen2-vl"], env=env, run_dir=tmp_path / "run", threads=1)
    assert (run.agent.reference is not None) is reference
    if reference:  # a frozen copy of the starting policy, not the policy itself
        assert run.agent.reference is not run.policy.model
        assert not any(p.requires_grad for p in run.agent.reference.parameters())
