"""Every training algorithm, by name: ``AGENTS[name] -> (AgentClass, ConfigClass)``.

The conformance tests run over this dict; the CLI can pick an agent from it.
To add an algorithm: subclass ``Agent`` (implement ``update``) and ``TrainConfig``, then add a line here.
"""

from __future__ import annotations

from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.rloo.agent import RLOOAgent
from agents.rloo.config import RLOOConfig

AGENTS: dict[str, tuple[type, type]] = {
    "grpo": (GRPOAgent, GRPOConfig),
    "rloo": (RLOOAgent, RLOOConfig),
}


def make_agent(policy, config, reference_model=None):
    """The agent registered under ``config.agent_name``, built on ``policy``."""
    try:
        agent_cls, _ = AGENTS[config.agent_name]
    except KeyError:
        raise ValueError(f"no agent named {config.agent_name!r}; known: {sorted(AGENTS)}") from None
    return agent_cls(policy, config, reference_model=reference_model)
