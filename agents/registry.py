"""Every training algorithm, by name: ``AGENTS[name] -> (AgentClass, ConfigClass)``.

The conformance tests run over this dict; ``perception-r1 train --agent NAME`` picks from it.
To add an algorithm: subclass ``Agent`` (implement ``update``) and ``TrainConfig``, then add a line here,
or, without touching the package, set ``config_class`` on your agent and name it on the command line:
``--agent my_package.module:MyAgent`` or ``--agent path/to/file.py:MyAgent``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.rloo.agent import RLOOAgent
from agents.rloo.config import RLOOConfig

AGENTS: dict[str, tuple[type, type]] = {
    "grpo": (GRPOAgent, GRPOConfig),
    "rloo": (RLOOAgent, RLOOConfig),
}


def resolve_agent(spec: str) -> tuple[type, type]:
    """(AgentClass, ConfigClass) for a registered name, ``module.path:Class`` or ``file.py:Class``."""
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
    config_cls = getattr(agent_cls, "config_class", None)
    if agent_cls is None or config_cls is None:
        raise ValueError(f"{spec}: expected an Agent subclass with a config_class attribute")
    return agent_cls, config_cls


def make_agent(policy, config, reference_model=None, spec: str | None = None):
    """The agent ``spec`` names (default: ``config.agent_name``), built on ``policy``."""
    spec = spec or config.agent_name
    agent_cls, _ = resolve_agent(spec)
    # agents with a KL term take the frozen reference; others need not accept the argument
    extra = {} if reference_model is None else {"reference_model": reference_model}
    agent = agent_cls(policy, config, **extra)
    agent.spec = spec  # saved in checkpoints, so that --resume rebuilds the same agent
    return agent
