"""The options' fixed values have one home each (agents/config.py; the model sizes: agents/presets.py); the
code that acts on a value handles every value listed there, so a value added to a list without its code
fails here, not in a user's run."""

import math
from types import SimpleNamespace

import pytest
import torch

from agents import engines
from agents.base import Agent
from agents.build import CHECKPOINTING
from agents.config import ACTIVATION_CHECKPOINTING, DTYPES, LR_SCHEDULERS, ROLLOUT_ENGINES, TrainConfig
from agents.policies.loading import resolve_dtype
from agents.presets import PRESETS, presets_help

# the learning-rate factor at step 1 of 4 without warm-up, by hand: constant 1; linear 1 - 1/4;
# cosine (1 + cos(pi * 1/4)) / 2
FACTOR_AT_STEP_1_OF_4 = {"constant": 1.0, "linear": 0.75, "cosine": (1 + math.cos(math.pi / 4)) / 2}


def test_every_learning_rate_schedule_has_its_formula():
    assert set(LR_SCHEDULERS) == set(FACTOR_AT_STEP_1_OF_4)
    for name in LR_SCHEDULERS:
        agent = SimpleNamespace(config=TrainConfig(lr_scheduler=name, total_steps=4))
        assert Agent._lr_factor(agent, 1) == pytest.approx(FACTOR_AT_STEP_1_OF_4[name]), name


@pytest.mark.parametrize("name", DTYPES)
def test_every_dtype_option_loads_as_that_torch_dtype(name):
    assert resolve_dtype(name) is getattr(torch, name)


def test_every_rollout_engine_option_is_built_by_make_engine(monkeypatch):
    """Each name reaches its engine's class (``auto`` the one auto_engine picks), none the 'must be one of'."""
    classes = {
        "agents.engines.fast.FastEngine": "fast",
        "agents.engines.transformers_engine.TransformersEngine": "transformers",
        "agents.engines.vllm_engine.VLLMEngine": "vllm",
    }
    for path, name in classes.items():
        monkeypatch.setattr(path, lambda policy, _name=name, **options: _name)
    monkeypatch.setattr(engines, "auto_engine", lambda policy: ("transformers", "picked by the test"))
    made = {name: engines.make_engine(name, policy=None) for name in ROLLOUT_ENGINES}
    assert made == {"auto": "transformers", "fast": "fast", "transformers": "transformers", "vllm": "vllm"}


def test_every_activation_checkpointing_option_maps_to_the_policys_setting():
    from agents.policies import loading

    assert tuple(CHECKPOINTING) == ACTIVATION_CHECKPOINTING
    assert all(setting in loading.ACTIVATION_CHECKPOINTING for setting in CHECKPOINTING.values())


def test_every_demo_recipe_names_a_preset_and_a_schedule_of_the_lists():
    from agents.demo.recipes import RECIPES

    for name, recipe in RECIPES.items():
        assert recipe.preset in PRESETS and recipe.grpo_lr_scheduler in LR_SCHEDULERS, name


def test_the_presets_help_names_every_preset_with_its_summary():
    shown = presets_help()
    assert shown.startswith("tiny (0.26M parameters, the demo), mini (1.6M), small (")
    assert all(f"{name} ({preset.summary})" in shown and preset.summary for name, preset in PRESETS.items())
