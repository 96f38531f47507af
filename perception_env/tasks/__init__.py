"""The tasks, one class each (a :class:`~perception_env.core.PerceptionEnv` subclass), and their registry.

:data:`TASKS` (name -> class) is the one list: ``gym.make`` ids (:data:`ENV_IDS`), data sources
(:func:`perception_env.data.make_dataset`), the paper's metrics (:func:`perception_env.evaluation.task_metrics`),
the report's columns and eval's answer length are all read off it. A new task is one module defining its
class and one call, ``register_task(MyTaskEnv)``.
"""

from __future__ import annotations

import gymnasium as gym

from perception_env.core import PerceptionEnv
from perception_env.vector import vector_entry_point

TASKS: dict[str, type[PerceptionEnv]] = {}
ENV_IDS: dict[str, str] = {}  # Gymnasium id -> entry point "module:Class"


def register_task(task_cls: type[PerceptionEnv]) -> type[PerceptionEnv]:
    """Add ``task_cls`` to :data:`TASKS` and register its ``env_id`` with Gymnasium; returns it (a decorator)."""
    for attribute in ("task", "env_id", "default_format"):
        if not getattr(task_cls, attribute, ""):
            raise ValueError(f"{task_cls.__name__} sets no {attribute}: a task needs it")
    if task_cls.task in TASKS or task_cls.env_id in ENV_IDS:
        raise ValueError(f"task {task_cls.task!r} ({task_cls.env_id}) is already registered")
    TASKS[task_cls.task] = task_cls
    ENV_IDS[task_cls.env_id] = f"{task_cls.__module__}:{task_cls.__qualname__}"
    # one step per episode: no TimeLimit; the env itself terminates. gym.make_vec(id, n) without a mode
    # builds a vector env that resets in the step that ends an episode (perception_env.vector)
    gym.register(
        id=task_cls.env_id,
        entry_point=ENV_IDS[task_cls.env_id],
        vector_entry_point=vector_entry_point(task_cls.env_id),  # a string: the spec is JSON (Minari)
        disable_env_checker=False,
    )
    return task_cls


def get_task(name: str) -> type[PerceptionEnv]:
    """The task called ``name``, or ``ValueError`` naming the known ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; one of {tuple(TASKS)}") from None


def _register_built_in() -> None:
    from perception_env.tasks.counting import CountingEnv
    from perception_env.tasks.detection import DetectionEnv
    from perception_env.tasks.grounding import GroundingEnv
    from perception_env.tasks.ocr import OCREnv

    for task_cls in (DetectionEnv, CountingEnv, GroundingEnv, OCREnv):
        register_task(task_cls)


_register_built_in()

__all__ = ["ENV_IDS", "TASKS", "get_task", "register_task"]
