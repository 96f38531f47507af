"""Vector envs of the perception tasks: ``gym.make_vec(env_id, num_envs)`` builds one here.

A perception episode is one step, so a finished env is reset in the step that finished it
(``AutoresetMode.SAME_STEP``: the answer's reward, ``terminated=True``, the next observation, and the
finished episode's ``final_obs`` / ``final_info`` in ``info``). Gymnasium's own vector envs reset on the
*next* step by default (``NEXT_STEP``), which spends every second step on a reset and drops the answers
given in it; ``gym.make_vec(..., vectorization_mode="sync" | "async")`` is Gymnasium's own builder, so give it
``vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}``.

Each env id's vector entry point is the string ``"perception_env.vector:<env id>"`` (this module's attribute
named by the id, see :func:`__getattr__`), not a callable: an env spec with a callable cannot be written as
JSON (``EnvSpec.to_json``, which Minari and other dataset tools call to store the env).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode


def make_vector_env(
    env_id: str,
    num_envs: int = 1,
    asynchronous: bool = False,
    context: str | None = None,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``gym.make(env_id, **kwargs)`` stepped together, reset in the step that ends
    them; ``asynchronous=True``: each in its own process (observations in shared memory), started by
    ``context``, a multiprocessing start method ("spawn", "forkserver", "fork"; None: the platform's)."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if context is not None and not asynchronous:
        raise ValueError(f"context={context!r} starts processes: it needs asynchronous=True")
    # a module-level function, not a lambda: it pickles by name, so a worker process started by "spawn" or
    # "forkserver" imports this package (registering the ids) before it builds its env
    env_fns = [functools.partial(_make_env, env_id, kwargs) for _ in range(num_envs)]
    if asynchronous:
        return gym.vector.AsyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP, context=context)
    return gym.vector.SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)


_ENTRY_POINT_IDS: set[str] = set()  # the ids vector_entry_point was asked for (registered tasks)


def vector_entry_point(env_id: str) -> str:
    """The vector entry point Gymnasium registers for ``env_id``: ``"perception_env.vector:<env id>"``."""
    if ":" in env_id:  # Gymnasium splits an entry point at its one colon
        raise ValueError(f"an env id with a vector entry point has no ':', got {env_id!r}")
    _ENTRY_POINT_IDS.add(env_id)
    return f"{__name__}:{env_id}"


def _make_env(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    return gym.make(env_id, **kwargs)


def __getattr__(name: str) -> Any:
    """``perception_env.vector.<env id>``: the vector entry point of a registered task's id, ``make_vector_env``
    with the id filled in (``getattr(module, "PerceptionR1/Counting-v0")``, as Gymnasium's loader reads it)."""
    if name in _ENTRY_POINT_IDS:
        return functools.partial(make_vector_env, name)
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}; the vector entry points of the registered tasks: "
        f"{', '.join(sorted(_ENTRY_POINT_IDS))} (a task of your own: import the module that registers it first)"
    )
