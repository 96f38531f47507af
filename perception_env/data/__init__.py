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

TASKS = ("detection", "counting", "grounding", "ocr")
SYNTHETIC = {
    "detection": ShapesDetection,
    "counting": ShapesCounting,
    "grounding": ShapesGrounding,
    "ocr": RenderedTextOCR,
}
# source -> the one task it serves ("synthetic" and "jsonl" serve all four)
REAL_SOURCES = {"coco": "detection", "refcoco": "grounding", "pixmo-count": "counting", "page-ocr": "ocr"}
SOURCES = ("synthetic", *REAL_SOURCES, "jsonl")


def _coco(
    split: str, root=None, annotation_file=None, image_dir=None, year: int = 2017, **kw
) -> CocoDetection:
    if annotation_file is None or image_dir is None:
        if root is None:
            raise ValueError("coco needs annotation_file= and image_dir=, or root= (official layout)")
        split = split.casefold()  # COCO's folders are lower case: "Val" means val2017
        name = f"{'val' if split in ('val', 'test') else split}{year}"  # COCO's test set has no labels
        annotation_file = annotation_file or Path(root) / "annotations" / f"instances_{name}.json"
        image_dir = image_dir or Path(root) / name
    return CocoDetection(annotation_file, image_dir, **kw)


def _refcoco(
    split: str, root=None, refs_file=None, instances_file=None, image_dir=None, **kw
) -> RefCocoGrounding:
    if refs_file is not None and instances_file is not None and image_dir is not None:
        return RefCocoGrounding(refs_file, instances_file, image_dir, split, **kw)
    if root is None:
        raise ValueError("refcoco needs root= (refer layout) or refs_file=, instances_file= and image_dir=")
    return RefCocoGrounding.from_root(root, split=split, image_dir=image_dir, **kw)


def _from_file(cls):
    def build(split: str, path=None, root=None, **kw):
        if path is not None:
            return cls(path, **kw)
        if root is None:
            raise ValueError(
                f"{cls.__name__} needs path= (a JSONL file) or root= (a folder of <split>.jsonl)"
            )
        return cls.from_root(root, split=split, **kw)

    return build


def make_dataset(task: str, source: str = "synthetic", split: str = "train", **kwargs) -> PerceptionDataset:
    """The dataset for ``task`` from ``source``; ``kwargs`` go to its class.

    * ``synthetic``: :class:`ShapesDetection` / :class:`ShapesCounting` /
      :class:`ShapesGrounding` / :class:`RenderedTextOCR` (``difficulty``, ``size``, ``seed``).
    * ``coco`` (detection): ``root`` or ``annotation_file`` + ``image_dir`` -> :class:`CocoDetection`.
    * ``refcoco`` (grounding): ``root`` (+ ``dataset`` "refcoco"/"refcoco+"/"refcocog",
      ``split_by``, ``image_dir``) or ``refs_file`` + ``instances_file`` + ``image_dir``.
    * ``pixmo-count`` (counting), ``page-ocr`` (ocr): ``path`` to a JSONL file or ``root`` with ``<split>.jsonl``.
    * ``jsonl`` (any task): ``path`` (see :mod:`perception_env.data.loaders.jsonl`).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {TASKS}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {SOURCES}")
    if source in REAL_SOURCES and REAL_SOURCES[source] != task:
        raise ValueError(f"source {source!r} serves the {REAL_SOURCES[source]!r} task, not {task!r}")
    if source == "synthetic":
        return SYNTHETIC[task](split=split, **kwargs)
    if source == "jsonl":
        if "path" not in kwargs:
            raise ValueError("source 'jsonl' needs path= (a JSONL file)")
        return JsonlDataset(kwargs.pop("path"), task, **kwargs)
    build = {
        "coco": _coco,
        "refcoco": _refcoco,
        "pixmo-count": _from_file(PixmoCount),
        "page-ocr": _from_file(PageOcr),
    }[source]
    return build(split, **kwargs)


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
    "get_difficulty",
    "make_dataset",
]
