"""RLOO (Ahmadian et al., 2024): REINFORCE with a leave-one-out baseline from the group's other answers."""

from agents.rloo.agent import RLOOAgent, leave_one_out_advantages
from agents.rloo.config import RLOOConfig

__all__ = ["RLOOAgent", "RLOOConfig", "leave_one_out_advantages"]
