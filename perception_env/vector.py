"""Vector envs of the perception tasks: ``gym.make_vec(env_id, num_envs)`` builds one here.

A perception episode is one step, so a finished env is reset in the step that finished it
(``AutoresetMode.SAME_STEP``: the answer's reward, ``terminated=True``, the next observation, and the
finished episode's ``final_obs`` / ``final_info`` in ``info``). Gymnasium's own vector envs reset on the
*next* step by default (``NEXT_STEP``), which spends every second step on a reset and drops the answers
given in it; ``gym.make_vec(..., vectorization_mode="sync" | "async")`` is Gymnasium's own builder, so give it
``vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode


def make_vector_env(
    env_id: str, num_envs: int = 1, asynchronous: bool = False, **kwargs: Any
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``gym.make(env_id, **kwargs)`` stepped together, reset in the step that ends
    them; ``asynchronous=True``: each in its own process (observations in shared memory)."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    env_fns = [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)]
    vector_cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    return vector_cls(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
