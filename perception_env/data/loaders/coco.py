"""COCO instances (detection): an annotation JSON plus an image folder, both local.

Expected layout (the official one)::

    root/annotations/instances_train2017.json   root/train2017/000000000009.jpg ...
    root/annotations/instances_val2017.json     root/val2017/...

Boxes are converted from COCO's ``[x, y, w, h]`` to ``[x1, y1, x2, y2]``,
pixels of the original image. Labels are category *names*. COCO category
ids are not contiguous (80 classes use ids 1..90), so ``categories`` lists
names in ascending id order and ``name_to_category_id`` /
``category_id_to_name`` map between them: never use a position in
``categories`` as a COCO id (the official code's off-by-one).

Checked at load: every box lies in its image's declared width x height (a
pixel of slack), and, with ``check_images``, every image file exists, its
header is readable and its size is the declared one (no pixel is decoded).
EXIF orientation: COCO's annotations are in the frame of the STORED pixels
(its declared sizes are the stored ones, pycocotools never reads pixels, and
COCO was annotated in browsers that showed images as stored), so the pixels
are used as stored, unless an image's declared size fits only its upright
(EXIF-turned) frame, as in COCO files exported by tools that show photos
upright (``exif_orientation`` overrides this; docs/real-data.md).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from perception_env.data.loaders._records import (
    DropLog,
    box,
    check_box_inside,
    check_index,
    declared_image_upright,
    field,
    read_json,
)
from perception_env.data.loaders.errors import Where
from perception_env.data.loaders.images import exif_policy
from perception_env.data.sample import Sample


def _records(data: object, key: str, where: Where) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise where.error(f"expected a top-level {key!r} list")
    for i, r in enumerate(data[key]):
        if not isinstance(r, dict):
            raise where.at(f"{key}[{i}]").error(f"expected an object, got {type(r).__name__}")
    return data[key]


def _categories(data: dict, where: Where) -> dict[int, str]:
    """Category id -> name, each id and name once."""
    cats: dict[int, str] = {}
    for c in _records(data, "categories", where):
        w = where.at(f"category {c.get('id')!r}")
        cid, cname = field(c, "id", int, w), field(c, "name", str, w)
        if cid in cats or cname in cats.values():
            raise w.error(f"duplicate category id or name ({cid}, {cname!r})")
        cats[cid] = cname
    return cats


def _images(data: dict, where: Where) -> dict[int, tuple[str, int, int]]:
    """Image id -> ``(file_name, width, height)`` as declared (positive sizes, each id once)."""
    images = {}
    for im in _records(data, "images", where):
        w = where.at(f"image {im.get('id')!r}")
        iid = field(im, "id", int, w)
        if iid in images:
            raise w.error("duplicate image id")
        file_name = field(im, "file_name", str, w)
        width, height = field(im, "width", int, w), field(im, "height", int, w)
        if width <= 0 or height <= 0:
            raise w.error(f"image size must be positive, got {width}x{height}")
        images[iid] = (file_name, width, height)
    return images


def _boxes_per_image(
    data: dict, where: Where, images: dict[int, tuple[str, int, int]], cats: dict[int, str]
) -> dict[int, list[tuple[np.ndarray, int, bool, int]]]:
    """Image id -> its annotations ``(xyxy box, category id, iscrowd, annotation id)``, each box inside its
    image and naming a known image and category."""
    per_image: dict[int, list[tuple[np.ndarray, int, bool, int]]] = {i: [] for i in images}
    for a in _records(data, "annotations", where):
        w = where.at(f"annotation {a.get('id')!r}")
        aid = field(a, "id", int, w)
        iid, cid = field(a, "image_id", int, w), field(a, "category_id", int, w)
        if iid not in images:
            raise w.error(f"unknown image_id {iid}")
        if cid not in cats:
            raise w.error(
                f"unknown category_id {cid} (known: {min(cats, default=None)}..{max(cats, default=None)})"
            )
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1, True, False):
            raise w.error(f"iscrowd must be 0 or 1, got {crowd!r}")
        xyxy = box(a.get("bbox"), "bbox", w, fmt="xywh")
        check_box_inside(xyxy, images[iid][1], images[iid][2], f"bbox of image {iid}", w)
        per_image[iid].append((xyxy, cid, bool(crowd), aid))
    return per_image


class CocoDetection:
    """COCO-format detection data via ``pycocotools.coco.COCO``.

    Arguments: ``annotation_file`` (instances JSON), ``image_dir`` (folder of
    the ``file_name`` s), ``skip_empty`` (drop images without annotations;
    default False: they are kept, with no boxes; counted in ``dropped``),
    ``check_images`` (read every image header now: missing or unreadable
    files and wrong declared sizes fail at load; default True),
    ``exif_orientation`` ("auto", "apply", "ignore"; see the module docstring), ``name``.

    Attributes: ``coco`` (the pycocotools index, e.g. for ``COCOeval``),
    ``categories``, ``category_ids`` (same order), ``name_to_category_id``,
    ``category_id_to_name``, ``dropped`` (reason -> number of entries left
    out; reported once as a warning). Sample ``meta``: ``image_id``,
    ``file_name``, ``category_ids`` and ``annotation_ids`` (one per box).
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        *,
        skip_empty: bool = False,
        check_images: bool = True,
        exif_orientation: str = "auto",
        name: str = "coco",
    ):
        from pycocotools.coco import COCO

        exif_policy(exif_orientation)
        self.annotation_file, self.image_dir, self.name = Path(annotation_file), Path(image_dir), name
        data = read_json(self.annotation_file)
        where = Where(self.annotation_file)

        cats = _categories(data, where)
        self.category_ids = tuple(sorted(cats))
        self.categories = tuple(cats[i] for i in self.category_ids)
        self.category_id_to_name = {i: cats[i] for i in self.category_ids}
        self.name_to_category_id = {n: i for i, n in self.category_id_to_name.items()}
        images = _images(data, where)
        per_image = _boxes_per_image(data, where, images, cats)

        drops = DropLog()
        self.image_ids = tuple(i for i in sorted(images) if per_image[i] or not skip_empty)
        for iid in sorted(set(images) - set(self.image_ids)):
            drops.add("image without annotations (skip_empty=True)", where.at(f"image {iid}"))
        # without headers the frame cannot be told: the stored pixels (COCO's), unless told to turn them
        self._upright = dict.fromkeys(self.image_ids, exif_orientation == "apply")
        if check_images:
            for iid in self.image_ids:
                file_name, width, height = images[iid]
                w = where.at(f"image {iid}")
                self._upright[iid] = declared_image_upright(
                    file_name, self.image_dir, (width, height), w, exif=exif_orientation
                )
        self._images, self._annotations = images, per_image
        self.dropped = drops.report(name)

        # pycocotools re-reads nothing: hand it the validated dict (and keep its progress prints quiet).
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        iid = self.image_ids[check_index(index, len(self), self.name)]
        file_name, width, height = self._images[iid]
        anns = self._annotations[iid]
        return Sample(
            sample_id=f"{self.name}/{iid}",
            width=width,
            height=height,
            image_path=str(self.image_dir / file_name),
            boxes=np.array([a[0] for a in anns], dtype=np.float64).reshape(-1, 4),
            labels=tuple(self.category_id_to_name[a[1]] for a in anns),
            iscrowd=tuple(a[2] for a in anns),
            exif_transpose=self._upright[iid],
            origin=f"{self.annotation_file}, image {iid}",
            meta={
                "image_id": iid,
                "file_name": file_name,
                "category_ids": [a[1] for a in anns],
                "annotation_ids": [a[3] for a in anns],
            },
        )
