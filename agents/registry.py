"""Every training algorithm by its one name: ``AGENTS[name] -> AgentClass`` (its options: ``config_class``).

The conformance tests run over this dict; ``perception-r1 train --agent NAME`` picks from it.
To add an algorithm: subclass ``Agent`` (``name``, ``config_class``, ``advantages``, ``loss``), then add the
class to :data:`AGENTS`' line here,
or, without touching the package, name it on the command line:
``--agent my_package.module:MyAgent`` or ``--agent path/to/file.py:MyAgent``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from agents.base import Agent, class_spec
from agents.config import SetupError, TrainConfig
from agents.grpo.agent import GRPOAgent
from agents.reinforce_pp import ReinforcePPAgent
from agents.rloo.agent import RLOOAgent

# one line per algorithm; each class declares its own name (Agent.name)
AGENTS: dict[str, type[Agent]] = {agent.name: agent for agent in (GRPOAgent, RLOOAgent, ReinforcePPAgent)}


def resolve_agent(spec: str) -> type[Agent]:
    """The Agent class of a registered name, ``module.path:Class`` or ``file.py:Class``."""
    if spec in AGENTS:
        return AGENTS[spec]
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ValueError(f"no agent named {spec!r}; known: {sorted(AGENTS)}, or module:Class / file.py:Class")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"agent file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"_perception_r1_agent_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module  # dataclasses (the agent's config) look their module up
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    agent_cls = getattr(module, name, None)
    if not (isinstance(agent_cls, type) and issubclass(agent_cls, Agent)):
        raise ValueError(f"{spec}: expected an Agent subclass, found {agent_cls!r}")
    if not issubclass(getattr(agent_cls, "config_class", None) or object, TrainConfig):
        raise ValueError(f"{spec}: expected an Agent subclass with a config_class (a TrainConfig subclass)")
    return agent_cls


def agent_spec(agent_cls: type[Agent]) -> str:
    """The one name of ``agent_cls``: its registry key, else ``module:Class``."""
    return class_spec(agent_cls)


def agent_label(spec: str) -> str:
    """A spec as a run folder names it: the registry key, or the class name of ``module:Class``."""
    return spec.rpartition(":")[2]


def spec_for_config(config: TrainConfig) -> str:
    """The registered agent whose options ``config`` holds (a GRPOConfig: ``"grpo"``)."""
    for name, agent_cls in AGENTS.items():
        if type(config) is agent_cls.config_class:
            return name
    raise SetupError(
        f"no registered agent takes a {type(config).__name__}: name the agent (--agent module:Class)"
    )


def make_agent(policy, config: TrainConfig, reference_model=None, spec: str | None = None) -> Agent:
    """The agent ``spec`` names (default: the registered one whose options ``config`` holds), on ``policy``."""
    spec = spec or spec_for_config(config)
    agent_cls = resolve_agent(spec)
    # agents with a KL term take the frozen reference; others need not accept the argument
    extra = {} if reference_model is None else {"reference_model": reference_model}
    agent = agent_cls(policy, config, **extra)
    agent.spec = spec  # saved in checkpoints, so that --resume rebuilds the same agent
    return agent
