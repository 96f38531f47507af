r"""PageOCR (OCR) from a local JSONL file: ``{"image": "pages/p1.png", "text": "..."}`` per line.

Image paths are relative to the JSONL file's folder (or absolute); ``text``
is the page's ground truth, lines joined by ``"\n"``. Expected layout:
``root/train.jsonl``, ``root/test.jsonl`` (e.g. one file per language) plus
the images they name.
"""

from __future__ import annotations

from pathlib import Path

from perception_env.data.loaders._records import split_file
from perception_env.data.loaders.jsonl import JsonlDataset


class PageOcr(JsonlDataset):
    """Page images with their text.

    Arguments: ``path``, ``name``, ``image_root``, ``exif_orientation`` (as
    :class:`~perception_env.data.JsonlDataset`); or :meth:`from_root` with a
    split, the file ``root/<split>.jsonl`` matched ignoring case when unambiguous.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "page-ocr",
        image_root: str | Path | None = None,
        exif_orientation: str = "auto",
    ):
        super().__init__(path, "ocr", name=name, image_root=image_root, exif_orientation=exif_orientation)

    @classmethod
    def from_root(cls, root: str | Path, split: str = "train", **kwargs) -> PageOcr:
        return cls(split_file(root, split), **kwargs)
