"""The tasks, one class each (a :class:`~perception_env.core.PerceptionEnv` subclass), and their registry.

:data:`TASKS` (name -> class) is the one list: ``gym.make`` ids (:data:`ENV_IDS`), data sources
(:func:`make_dataset`, each task's own :meth:`~perception_env.core.PerceptionEnv.make_dataset`), the paper's metrics (:func:`perception_env.evaluation.task_metrics`),
the report's columns and eval's answer length are all read off it. A new task is one module defining its
class and one call, ``register_task(MyTaskEnv)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from perception_env.core import ANY_TASK_SOURCES, PerceptionEnv
from perception_env.data.sample import PerceptionDataset
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


def make_dataset(
    task: str, source: str = "synthetic", split: str = "train", **kwargs: Any
) -> PerceptionDataset:
    """The dataset for ``task`` from ``source``; ``kwargs`` go to its builder (the task class's
    :meth:`~perception_env.core.PerceptionEnv.make_dataset` says which).

    * ``synthetic`` (every built-in task): the task's built-in data, e.g. ``ShapesDetection`` (``difficulty``,
      ``size``, ``seed``).
    * ``jsonl`` (any task with a JSONL schema): ``path`` (see :mod:`perception_env.data.loaders.jsonl`).
    * ``hf`` (the same tasks): ``path`` to a local Hugging Face dataset (``save_to_disk`` folder or parquet
      files), ``columns`` mapping the JSONL schema's fields to its columns (:mod:`perception_env.data.loaders.hf`).
    * the task's real sources: ``coco`` (detection): ``root`` or ``annotation_file`` + ``image_dir``;
      ``refcoco`` (grounding): ``root`` (+ ``dataset`` "refcoco"/"refcoco+"/"refcocog", ``split_by``,
      ``image_dir``) or ``refs_file`` + ``instances_file`` + ``image_dir``; ``pixmo-count`` (counting),
      ``page-ocr`` (ocr): ``path`` to a JSONL file or ``root`` with ``<split>.jsonl``.
    """
    definition = get_task(task)
    owners = {name: t.task for t in TASKS.values() for name in t.real_sources}
    if source in owners and source not in definition.real_sources:
        raise ValueError(f"source {source!r} serves the {owners[source]!r} task, not {task!r}")
    if source not in sources():
        raise ValueError(f"unknown source {source!r}; one of {sources()}")
    return definition.make_dataset(source, split, **kwargs)


def sources() -> tuple[str, ...]:
    """Every data source of the registered tasks: ``synthetic``, their real sources, ``jsonl``, ``hf``."""
    offered = {name for t in TASKS.values() for name in t.sources()}
    every = ("synthetic", *(name for t in TASKS.values() for name in t.real_sources), *ANY_TASK_SOURCES)
    return tuple(name for name in dict.fromkeys(every) if name in offered)


def _register_built_in() -> None:
    from perception_env.tasks.counting import CountingEnv
    from perception_env.tasks.detection import DetectionEnv
    from perception_env.tasks.grounding import GroundingEnv
    from perception_env.tasks.ocr import OCREnv

    for task_cls in (DetectionEnv, CountingEnv, GroundingEnv, OCREnv):
        register_task(task_cls)


_register_built_in()

__all__ = ["ENV_IDS", "TASKS", "get_task", "make_dataset", "register_task", "sources"]
