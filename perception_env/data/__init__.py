"""Datasets: built-in synthetic ones (the default) and loaders for real data in local files.

Every dataset is a :class:`PerceptionDataset`: ``name``, ``categories``,
``len()``, and ``ds[i]`` -> :class:`Sample` (a negative or too large index
raises ``IndexError``). This package only loads: which sources a task offers, and which builder below
makes each, its class says (``synthetic_data``, ``real_sources``, ``jsonl_schema``);
:func:`perception_env.tasks.make_dataset` picks one by task and source.
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


__all__ = [
    "EASY",
    "HARD",
    "MEDIUM",
    "PRESETS",
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
    "refcoco_source",
]
