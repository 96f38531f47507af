"""RefCOCO / RefCOCO+ / RefCOCOg (grounding) in the standard "refer" layout, local files.

Expected layout (as distributed with https://github.com/lichengunc/refer)::

    root/refcoco/refs(unc).p        root/refcoco/instances.json
    root/refcoco+/refs(unc).p       root/refcoco+/instances.json
    root/refcocog/refs(umd).p       root/refcocog/instances.json   (or refs(google).p)
    image_dir = COCO train2014, e.g. root/images/mscoco/images/train2014/COCO_train2014_000000000009.jpg

``refs(*).p`` is a pickled list of refs: ``{"ref_id", "ann_id", "image_id",
"split", "category_id", "sentences": [{"sent", "sent_id", ...}, ...], ...}``.
It is read with a restricted unpickler that builds only builtin containers
and scalars (a pickle can otherwise run arbitrary code). The same list may be
given as a JSON file instead (``refs_file="refs_unc.json"``). Boxes come from
``instances.json`` (``ann_id`` -> ``bbox``, COCO ``[x, y, w, h]``), converted
to ``[x1, y1, x2, y2]`` pixels of the original image.

One sample per (ref, sentence) of the chosen split (``train``, ``val``,
``testA``, ``testB`` for RefCOCO/+; ``train``, ``val``, ``test`` for RefCOCOg umd),
split names matched ignoring case, in the argument and in the refs. Boxes
and image sizes are checked as :class:`~perception_env.data.CocoDetection`
checks them (RefCOCO's images are COCO train2014's, annotated in the same frame).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from perception_env.data.loaders._records import (
    DropLog,
    box,
    check_box_inside,
    check_index,
    declared_image_upright,
    field,
    read_json,
)
from perception_env.data.loaders.coco import _records
from perception_env.data.loaders.errors import DatasetFormatError, Where
from perception_env.data.loaders.images import exif_policy
from perception_env.data.sample import Sample

REFER_SPLITS = ("train", "val", "test", "testA", "testB", "testC")
_SPLITS_FOLDED = {s.casefold(): s for s in REFER_SPLITS}  # distinct: a split name in any case is unambiguous
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global except harmless builtin types.

    Lists, dicts, strings and numbers are built by pickle opcodes without any
    lookup; only sets and Python 3 bytes (``_codecs.encode`` in protocol <= 2)
    need a global.
    """

    ALLOWED = frozenset(
        {
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "bytearray"),
            ("builtins", "complex"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        # Python 2 pickles (protocol <= 2) name the builtins module "__builtin__".
        if ("builtins" if module == "__builtin__" else module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a refs pickle")


def load_refs(path: str | Path) -> list:
    """The refs list from a ``.p`` pickle (restricted) or a ``.json`` file."""
    path = Path(path)
    if path.suffix == ".json":
        refs = read_json(path)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        try:
            # encoding="latin1": the official refs pickles were written by Python 2
            refs = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            raise DatasetFormatError(path, None, f"not a readable refs pickle: {e}") from None
    if not isinstance(refs, list):
        raise DatasetFormatError(path, None, f"expected a list of refs, got {type(refs).__name__}")
    return refs


def canonical_split(split: object) -> str | None:
    """The refer split name ``split`` means, ignoring case (``"testa"`` -> ``"testA"``); None if none."""
    return _SPLITS_FOLDED.get(split.casefold()) if isinstance(split, str) else None


class RefCocoGrounding:
    """Referring-expression grounding: ``query`` = the sentence, ``boxes`` = the one referred box.

    Arguments: ``refs_file`` (``refs(unc).p`` or JSON), ``instances_file``,
    ``image_dir`` (COCO train2014), ``split`` (any case), ``check_images``
    (read every used image's header now: missing or unreadable files and
    sizes other than the declared ones fail at load; default True),
    ``exif_orientation`` (as :class:`~perception_env.data.CocoDetection`:
    COCO's stored-pixel frame unless the declared size fits only the upright
    one), ``name``. Or :meth:`from_root` with the refer layout.

    Left out, counted in ``dropped`` (reason -> number) and reported once as a
    warning: refs without sentences, empty sentences, refs whose split is no
    refer split; refs whose category is not in ``instances.json`` keep their
    samples without a label (counted too). Sample ``labels`` = the category
    name; ``meta``: ``ref_id``, ``ann_id``, ``image_id``, ``sent_id``,
    ``category_id``, ``file_name``.
    """

    def __init__(
        self,
        refs_file: str | Path,
        instances_file: str | Path,
        image_dir: str | Path,
        split: str = "train",
        *,
        check_images: bool = True,
        exif_orientation: str = "auto",
        name: str = "refcoco",
    ):
        if canonical_split(split) is None:
            raise ValueError(f"unknown refer split {split!r}; one of {REFER_SPLITS} (any case)")
        exif_policy(exif_orientation)
        split = canonical_split(split)
        self.split, self.name, self.image_dir = split, f"{name}-{split}", Path(image_dir)
        self.categories: tuple[str, ...] = ()
        self._refs_file, self._instances_file = Path(refs_file), Path(instances_file)
        images, anns, cat_names = self._read_instances(self._instances_file)
        self._images, self._anns, self._cat_names = images, anns, cat_names
        drops = DropLog()
        self._samples: list[tuple] = []
        rw = Where(self._refs_file)
        for i, ref in enumerate(load_refs(self._refs_file)):
            if not isinstance(ref, dict):
                raise rw.at(f"refs[{i}]").error(f"expected a ref dict, got {type(ref).__name__}")
            self._add_ref(ref, rw.at(f"ref {ref.get('ref_id', f'#{i}')!r}"), drops)
        # without headers the frame cannot be told: the stored pixels (COCO's), unless told to turn them
        self._upright = dict.fromkeys({s[2] for s in self._samples}, exif_orientation == "apply")
        if check_images:
            iw = Where(self._instances_file)
            for image_id in sorted(self._upright):
                file_name, width, height = images[image_id]
                w = iw.at(f"image {image_id}")
                self._upright[image_id] = declared_image_upright(
                    file_name, self.image_dir, (width, height), w, exif=exif_orientation
                )
        self.dropped = drops.report(self.name)

    @staticmethod
    def _read_instances(path: Path) -> tuple[dict, dict, dict]:
        """``images`` id -> (file, w, h); ``anns`` id -> (image id, xyxy box, category id); category names."""
        data = read_json(path)
        iw = Where(path)
        images = {}
        for im in _records(data, "images", iw):
            w = iw.at(f"image {im.get('id')!r}")
            images[field(im, "id", int, w)] = (
                field(im, "file_name", str, w),
                field(im, "width", int, w),
                field(im, "height", int, w),
            )
        anns = {}
        for a in _records(data, "annotations", iw):
            w = iw.at(f"annotation {a.get('id')!r}")
            image_id, xyxy = field(a, "image_id", int, w), box(a.get("bbox"), "bbox", w, fmt="xywh")
            if image_id in images:
                _, width, height = images[image_id]
                check_box_inside(xyxy, width, height, f"bbox of image {image_id}", w)
            anns[field(a, "id", int, w)] = (image_id, xyxy, field(a, "category_id", int, w, optional=True))
        cat_names = {}
        if isinstance(data.get("categories"), list):
            for c in _records(data, "categories", iw):
                w = iw.at(f"category {c.get('id')!r}")
                cat_names[field(c, "id", int, w)] = field(c, "name", str, w)
        return images, anns, cat_names

    # C901 kept: one ref's checks in the order of its fields, then its sentences
    def _add_ref(self, ref: dict, w: Where, drops: DropLog) -> None:  # noqa: C901
        """The samples of one ref (one per sentence) of this split; what is left out goes to ``drops``."""
        ref_id, ann_id = field(ref, "ref_id", int, w), field(ref, "ann_id", int, w)
        image_id, ref_split = field(ref, "image_id", int, w), field(ref, "split", str, w)
        sentences = field(ref, "sentences", list, w)
        category_id = field(ref, "category_id", int, w, optional=True)
        if ann_id not in self._anns:
            raise w.error(f"ann_id {ann_id} is not in {self._instances_file}")
        if self._anns[ann_id][0] != image_id:
            theirs = self._anns[ann_id][0]
            raise w.error(f"image_id {image_id} differs from that of annotation {ann_id} ({theirs})")
        if image_id not in self._images:
            raise w.error(f"image_id {image_id} is not in {self._instances_file}")
        if canonical_split(ref_split) is None:
            drops.add(f"ref whose split is none of {', '.join(REFER_SPLITS)} (in no split)", w)
            return
        if canonical_split(ref_split) != self.split:
            return
        if not sentences:
            drops.add("ref without sentences", w)
            return
        if category_id is None:  # the ref does not say: its annotation does
            category_id = self._anns[ann_id][2]
        if category_id not in self._cat_names:
            reason = f"ref whose category_id is not in {self._instances_file.name} (kept without a label)"
            drops.add(reason, w)
        for j, s in enumerate(sentences):
            sw = w.at(f"{w.entry}, sentence {j}")
            if not isinstance(s, dict):
                raise sw.error(f"expected a sentence dict, got {type(s).__name__}")
            sent = field(s, "sent", str, sw).strip()
            if not sent:
                drops.add("empty sentence", sw)
                continue
            self._samples.append((ref_id, ann_id, image_id, s.get("sent_id", j), category_id, sent))

    @classmethod
    def from_root(
        cls,
        root: str | Path,
        dataset: str = "refcoco",
        split: str = "train",
        split_by: str | None = None,
        image_dir: str | Path | None = None,
        **kwargs,
    ) -> RefCocoGrounding:
        """The refer layout: ``root/{dataset}/refs({split_by}).p`` + ``instances.json`` (any case)."""
        folded = {d.casefold(): d for d in DEFAULT_SPLIT_BY}
        if not isinstance(dataset, str) or dataset.casefold() not in folded:
            raise ValueError(f"unknown dataset {dataset!r}; one of {sorted(DEFAULT_SPLIT_BY)}")
        dataset = folded[dataset.casefold()]
        root = Path(root)
        folder = root / dataset
        refs = folder / f"refs({split_by or DEFAULT_SPLIT_BY[dataset]}).p"
        if not refs.exists() and refs.with_suffix(".json").exists():
            refs = refs.with_suffix(".json")
        image_dir = Path(image_dir) if image_dir else root / "images" / "mscoco" / "images" / "train2014"
        kwargs.setdefault("name", dataset)
        return cls(refs, folder / "instances.json", image_dir, split, **kwargs)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        ref_id, ann_id, image_id, sent_id, category_id, sent = self._samples[
            check_index(index, len(self), self.name)
        ]
        file_name, width, height = self._images[image_id]
        return Sample(
            sample_id=f"{self.name}/{ref_id}/{sent_id}",
            width=width,
            height=height,
            image_path=str(self.image_dir / file_name),
            boxes=self._anns[ann_id][1].reshape(1, 4).copy(),
            labels=(self._cat_names[category_id],) if category_id in self._cat_names else (),
            query=sent,
            meta={
                "ref_id": ref_id,
                "ann_id": ann_id,
                "image_id": image_id,
                "sent_id": sent_id,
                "category_id": category_id,
                "file_name": file_name,
            },
            exif_transpose=self._upright[image_id],
            origin=f"{self._refs_file}, ref {ref_id} (image {image_id} of {self._instances_file})",
        )
