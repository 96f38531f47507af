"""Datasets: built-in synthetic ones (the default) and loaders for real data in local files.

Every dataset is a :class:`PerceptionDataset`: ``name``, ``categories``,
``len()``, and ``ds[i]`` -> :class:`Sample` (a negative or too large index
raises ``IndexError``). :func:`make_dataset` picks one by task and source.
"""

from __future__ import annotations

from pathlib import Path

from perception_env.data.loaders import (
    CocoDetection,
    DatasetFormatError,
    DroppedEntriesWarning,
    HfDataset,
    JsonlDataset,
    PageOcr,
    PixmoCount,
    RefCocoGrounding,
)
from perception_env.data.sample import PerceptionDataset, Sample
from perception_env.data.synthetic import (
    EASY,
    HARD,
    MEDIUM,
    PRESETS,
    Difficulty,
    RenderedTextOCR,
    ShapesCounting,
    ShapesDetection,
    ShapesGrounding,
    get_difficulty,
)


def coco_source(
    split: str, root=None, annotation_file=None, image_dir=None, year: int = 2017, **kw
) -> CocoDetection:
    """COCO detection from ``annotation_file`` + ``image_dir``, or ``root`` in the official layout."""
    if annotation_file is None or image_dir is None:
        if root is None:
            raise ValueError("coco needs annotation_file= and image_dir=, or root= (official layout)")
        split = split.casefold()  # COCO's folders are lower case: "Val" means val2017
        name = f"{'val' if split in ('val', 'test') else split}{year}"  # COCO's test set has no labels
        annotation_file = annotation_file or Path(root) / "annotations" / f"instances_{name}.json"
        image_dir = image_dir or Path(root) / name
    return CocoDetection(annotation_file, image_dir, **kw)


def refcoco_source(
    split: str, root=None, refs_file=None, instances_file=None, image_dir=None, **kw
) -> RefCocoGrounding:
    """RefCOCO/+/g from ``root`` (the refer layout) or ``refs_file`` + ``instances_file`` + ``image_dir``."""
    if refs_file is not None and instances_file is not None and image_dir is not None:
        return RefCocoGrounding(refs_file, instances_file, image_dir, split, **kw)
    if root is None:
        raise ValueError("refcoco needs root= (refer layout) or refs_file=, instances_file= and image_dir=")
    return RefCocoGrounding.from_root(root, split=split, image_dir=image_dir, **kw)


def jsonl_source(cls):
    """A builder of ``cls`` (a JSONL loader) from ``path=`` (one file) or ``root=`` (``<root>/<split>.jsonl``)."""

    def build(split: str, path=None, root=None, **kw):
        if path is not None:
            return cls(path, **kw)
        if root is None:
            raise ValueError(
                f"{cls.__name__} needs path= (a JSONL file) or root= (a folder of <split>.jsonl)"
            )
        return cls.from_root(root, split=split, **kw)

    return build


ANY_TASK_SOURCES = ("jsonl", "hf")  # your own data, in a task's schema


def make_dataset(task: str, source: str = "synthetic", split: str = "train", **kwargs) -> PerceptionDataset:
    """The dataset for ``task`` from ``source``; ``kwargs`` go to its class.

    * ``synthetic`` (every task): the task's built-in data, e.g. :class:`ShapesDetection` (``difficulty``,
      ``size``, ``seed``).
    * ``jsonl`` (any task): ``path`` (see :mod:`perception_env.data.loaders.jsonl`).
    * ``hf`` (any task): ``path`` to a local Hugging Face dataset (``save_to_disk`` folder or parquet files),
      ``columns`` mapping the JSONL schema's fields to its columns (see :mod:`perception_env.data.loaders.hf`).
    * the task's real sources: ``coco`` (detection): ``root`` or ``annotation_file`` + ``image_dir`` ->
      :class:`CocoDetection`; ``refcoco`` (grounding): ``root`` (+ ``dataset`` "refcoco"/"refcoco+"/"refcocog",
      ``split_by``, ``image_dir``) or ``refs_file`` + ``instances_file`` + ``image_dir``; ``pixmo-count``
      (counting), ``page-ocr`` (ocr): ``path`` to a JSONL file or ``root`` with ``<split>.jsonl``.
    """
    from perception_env.tasks import TASKS, get_task  # the task list (each task module imports this one)

    definition = get_task(task)
    owners = {name: t.task for t in TASKS.values() for name in t.real_sources}
    if source not in ("synthetic", *owners, *ANY_TASK_SOURCES):
        raise ValueError(f"unknown source {source!r}; one of {sources()}")
    if source in owners and source not in definition.real_sources:
        raise ValueError(f"source {source!r} serves the {owners[source]!r} task, not {task!r}")
    if source == "synthetic":
        if definition.synthetic_data is None:
            raise ValueError(f"task {task!r} has no built-in data: give source= (one of {sources()})")
        return definition.synthetic_data(split=split, **kwargs)
    if source == "jsonl":
        if "path" not in kwargs:
            raise ValueError("source 'jsonl' needs path= (a JSONL file)")
        return JsonlDataset(kwargs.pop("path"), task, **kwargs)
    if source == "hf":
        if "path" not in kwargs:
            raise ValueError(
                "source 'hf' needs path= (a save_to_disk folder, a parquet file or a folder of them)"
            )
        return HfDataset(kwargs.pop("path"), task, split=split, **kwargs)
    return definition.real_sources[source](split, **kwargs)


def sources() -> tuple[str, ...]:
    """Every data source: ``synthetic``, the tasks' real sources, ``jsonl``, ``hf``."""
    from perception_env.tasks import TASKS

    return ("synthetic", *(name for t in TASKS.values() for name in t.real_sources), *ANY_TASK_SOURCES)


def __getattr__(name: str):
    # TASKS (task names) and SOURCES, as before, now read off the task list (perception_env.tasks)
    if name == "TASKS":
        from perception_env.tasks import TASKS

        return tuple(TASKS)
    if name == "SOURCES":
        return sources()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EASY",
    "HARD",
    "MEDIUM",
    "PRESETS",
    "SOURCES",
    "TASKS",
    "CocoDetection",
    "DatasetFormatError",
    "Difficulty",
    "DroppedEntriesWarning",
    "HfDataset",
    "JsonlDataset",
    "PageOcr",
    "PerceptionDataset",
    "PixmoCount",
    "RefCocoGrounding",
    "RenderedTextOCR",
    "Sample",
    "ShapesCounting",
    "ShapesDetection",
    "ShapesGrounding",
    "coco_source",
    "get_difficulty",
    "jsonl_source",
    "make_dataset",
    "refcoco_source",
    "sources",
]
