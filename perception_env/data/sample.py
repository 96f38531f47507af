"""The one record every dataset yields, synthetic or real."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def _empty(cols: int) -> np.ndarray:
    return np.zeros((0, cols), dtype=np.float64)


@dataclass(frozen=True)
class Sample:
    """One annotated image.

    All coordinates are pixels of the ORIGINAL image (x right, y down); boxes
    are ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``.

    Which fields a task reads:

    * detection: ``boxes`` + ``labels`` (+ ``iscrowd`` for COCO evaluation)
    * counting:  ``points`` (one per object of class ``query``); ``boxes`` when known;
      ``count`` (the true number; datasets with counts but no points leave ``points`` empty)
    * grounding: ``boxes`` holds exactly one box; ``query`` is the referring expression
    * OCR:       ``text``
    * a task of your own: any of these, and in ``targets`` what they cannot hold (its JSONL schema's
      parser fills it: :mod:`perception_env.data.loaders.jsonl`)
    """

    sample_id: str
    width: int
    height: int
    image: np.ndarray | None = None  # [H, W, 3] uint8, when held in memory
    image_path: str | None = None  # real data: read lazily by load_image()
    boxes: np.ndarray = field(default_factory=lambda: _empty(4))  # [N, 4] float64 px
    labels: tuple[str, ...] = ()  # [N]
    points: np.ndarray = field(default_factory=lambda: _empty(2))  # [M, 2] float64 px
    query: str = ""  # counting: the object class; grounding: the referring expression
    text: str = ""  # OCR ground truth
    iscrowd: tuple[bool, ...] = ()  # [N]; empty means all False
    count: int | None = None  # counting: number of objects of class ``query``; None = len(points)
    meta: dict = field(default_factory=dict)  # source ids (COCO image_id, category ids, ...)
    targets: dict = field(default_factory=dict)  # a task's own target fields: name -> JSON value
    exif_transpose: bool = False  # image_path: turn the pixels upright by their EXIF orientation first
    origin: str = ""  # real data: the dataset file and entry it came from, named in image errors

    def load_image(self) -> np.ndarray:
        """The image as an ``[H, W, 3]`` uint8 array, in the ``width`` x ``height`` frame of the annotations.

        From ``image_path``: every PIL mode converted as
        :mod:`perception_env.data.loaders.images` says (16-bit scaled, transparency on
        white); an unreadable file, or pixels of another size, raises naming the file and this entry.
        """
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise ValueError(f"sample {self.sample_id!r} has neither an image nor an image_path")
        from perception_env.data.loaders.images import load_rgb  # local: keeps `import perception_env` light

        entry = f"sample {self.sample_id!r}" + (f" ({self.origin})" if self.origin else "")
        return load_rgb(
            self.image_path, exif_transpose=self.exif_transpose, size=(self.width, self.height), entry=entry
        )


class PerceptionDataset(Protocol):
    """What an env needs from a dataset: indexable samples (and, for detection, class names)."""

    name: str
    categories: Sequence[str]  # detection class names, in id order; may be empty for other tasks

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...
