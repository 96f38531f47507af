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
``testA``, ``testB`` for RefCOCO/+; ``train``, ``val``, ``test`` for RefCOCOg umd).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from perception_env.data.loaders._records import Where, box, check_index, field, read_json, resolve_image
from perception_env.data.loaders.coco import _records
from perception_env.data.loaders.errors import DatasetFormatError
from perception_env.data.sample import Sample

REFER_SPLITS = ("train", "val", "test", "testA", "testB", "testC")
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


class RefCocoGrounding:
    """Referring-expression grounding: ``query`` = the sentence, ``boxes`` = the one referred box.

    Arguments: ``refs_file`` (``refs(unc).p`` or JSON), ``instances_file``,
    ``image_dir`` (COCO train2014), ``split``, ``check_images`` (default
    True), ``name``. Or :meth:`from_root` with the refer layout. Sample
    ``labels`` = the category name; ``meta``: ``ref_id``, ``ann_id``,
    ``image_id``, ``sent_id``, ``category_id``, ``file_name``.
    """

    def __init__(
        self,
        refs_file: str | Path,
        instances_file: str | Path,
        image_dir: str | Path,
        split: str = "train",
        *,
        check_images: bool = True,
        name: str = "refcoco",
    ):
        if split not in REFER_SPLITS:
            raise ValueError(f"unknown refer split {split!r}; one of {REFER_SPLITS}")
        self.split, self.name, self.image_dir = split, f"{name}-{split}", Path(image_dir)
        self.categories: tuple[str, ...] = ()
        refs_file, instances_file = Path(refs_file), Path(instances_file)
        data = read_json(instances_file)
        iw = Where(instances_file)
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
            anns[field(a, "id", int, w)] = (
                field(a, "image_id", int, w),
                box(a.get("bbox"), "bbox", w, fmt="xywh"),
            )
        cat_names = {}
        if isinstance(data.get("categories"), list):
            for c in _records(data, "categories", iw):
                w = iw.at(f"category {c.get('id')!r}")
                cat_names[field(c, "id", int, w)] = field(c, "name", str, w)

        self._samples: list[tuple] = []
        rw = Where(refs_file)
        for i, ref in enumerate(load_refs(refs_file)):
            if not isinstance(ref, dict):
                raise rw.at(f"refs[{i}]").error(f"expected a ref dict, got {type(ref).__name__}")
            w = rw.at(f"ref {ref.get('ref_id', f'#{i}')!r}")
            ref_id, ann_id = field(ref, "ref_id", int, w), field(ref, "ann_id", int, w)
            image_id, ref_split = field(ref, "image_id", int, w), field(ref, "split", str, w)
            sentences = field(ref, "sentences", list, w)
            category_id = field(ref, "category_id", int, w, optional=True)
            if ann_id not in anns:
                raise w.error(f"ann_id {ann_id} is not in {instances_file}")
            if anns[ann_id][0] != image_id:
                raise w.error(
                    f"image_id {image_id} differs from that of annotation {ann_id} ({anns[ann_id][0]})"
                )
            if image_id not in images:
                raise w.error(f"image_id {image_id} is not in {instances_file}")
            if ref_split != split:
                continue
            for j, s in enumerate(sentences):
                sw = w.at(f"{w.entry}, sentence {j}")
                if not isinstance(s, dict):
                    raise sw.error(f"expected a sentence dict, got {type(s).__name__}")
                sent = field(s, "sent", str, sw).strip()
                if not sent:
                    raise sw.error("empty sentence")
                self._samples.append((ref_id, ann_id, image_id, s.get("sent_id", j), category_id, sent))
        if check_images:
            for image_id in sorted({s[2] for s in self._samples}):
                resolve_image(images[image_id][0], self.image_dir, iw.at(f"image {image_id}"))
        self._images, self._anns, self._cat_names = images, anns, cat_names

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
        """The refer layout: ``root/{dataset}/refs({split_by}).p`` + ``instances.json``."""
        if dataset not in DEFAULT_SPLIT_BY:
            raise ValueError(f"unknown dataset {dataset!r}; one of {sorted(DEFAULT_SPLIT_BY)}")
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
        )
