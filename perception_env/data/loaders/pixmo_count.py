"""PixMo-Count (counting) from a local JSONL export.

Expected layout: a JSONL file per split (``root/train.jsonl``,
``root/validation.jsonl``, ``root/test.jsonl``; images relative to that
file's folder, e.g. ``root/images/<sha256>.jpg``), one record per image::

    {"image": "images/abc.jpg", "label": "apple", "count": 3,
     "points": [{"x": 12.5, "y": 40.0}, ...]}

``points`` are in PERCENT of the image width/height (PixMo's convention, 0-100)
and are converted to pixels of the original image here; the column form
``"points": {"x": [...], "y": [...]}`` of the Hugging Face export is accepted
too. ``count`` must equal the number of points. Width/height come from the
image header unless the record has ``"width"``/``"height"``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from perception_env.data.loaders._records import field, number, split_file
from perception_env.data.loaders.errors import Where
from perception_env.data.loaders.jsonl import JsonlDataset

PIXMO_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def _percent_points(r: dict, w: Where) -> np.ndarray:
    raw = r.get("points", [])
    if isinstance(raw, dict):  # column form {"x": [...], "y": [...]}
        xs, ys = raw.get("x"), raw.get("y")
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise w.error("points {'x': [...], 'y': [...]} must be two lists of equal length")
        raw = [{"x": x, "y": y} for x, y in zip(xs, ys)]
    if not isinstance(raw, list):
        raise w.error(f"field 'points' must be a list, got {type(raw).__name__}")
    pts = []
    for i, p in enumerate(raw):
        if not isinstance(p, dict) or "x" not in p or "y" not in p:
            raise w.error(f"points[{i}] must be {{'x': ..., 'y': ...}}, got {p!r:.60}")
        xy = [number(p[k], f"points[{i}].{k}", w) for k in ("x", "y")]
        if not all(0.0 <= v <= 100.0 for v in xy):
            raise w.error(f"points[{i}] = {xy} is outside 0-100 (PixMo points are percentages)")
        pts.append(xy)
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


class PixmoCount(JsonlDataset):
    """PixMo-Count samples: ``query`` = ``label``, ``points`` in pixels, ``count``.

    Arguments: ``path`` (the JSONL file), ``name``, ``image_root``,
    ``exif_orientation`` (default "auto": pixels shown upright, as the
    browser-based pointing that annotated PixMo showed them; see
    :class:`~perception_env.data.JsonlDataset`); or :meth:`from_root` with a
    split name (any case).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "pixmo-count",
        image_root: str | Path | None = None,
        exif_orientation: str = "auto",
    ):
        def parse(r: dict, w: Where) -> dict:
            label = field(r, "label", str, w)
            count = field(r, "count", int, w)
            pts = _percent_points(r, w)
            if count != len(pts):
                raise w.error(f"count {count} differs from the {len(pts)} points")
            return {"query": label, "count": count, "points": pts}

        super().__init__(
            path,
            "counting",
            name=name,
            image_root=image_root,
            parser=parse,
            check_coordinates=False,  # percentages, checked to lie in 0-100 by the parser
            exif_orientation=exif_orientation,
        )
        # Percent -> pixels needs the image size, known only after the base class read it.
        self._samples = [
            replace(s, points=s.points * np.array([s.width, s.height]) / 100.0) for s in self._samples
        ]

    @classmethod
    def from_root(cls, root: str | Path, split: str = "train", **kwargs) -> PixmoCount:
        folded = split.casefold() if isinstance(split, str) else None
        if folded not in PIXMO_SPLITS:
            raise ValueError(f"unknown PixMo-Count split {split!r}; one of {sorted(PIXMO_SPLITS)} (any case)")
        return cls(split_file(root, PIXMO_SPLITS[folded]), **kwargs)
