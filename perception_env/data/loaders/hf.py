"""Hugging Face datasets as a data source (``source="hf"``), read offline from local files.

``path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (a ``DatasetDict``
gives the env's split), a parquet file, or a folder of parquet files (the hub's layout,
``data/<split>-00000-of-00001.parquet``, or any ``*.parquet``). Each row is read as a line of the JSONL
schema of its task (:mod:`perception_env.data.loaders.jsonl`, the task class's ``jsonl_schema``: coordinates in pixels of the image,
``[x1, y1, x2, y2]`` boxes), with ``columns`` mapping a schema field to the dataset's column where the names
differ, e.g. ``columns={"boxes": "bbox", "labels": "category", "expression": "sentence"}``.

The image column holds images (``datasets.Image``: bytes or a path) or paths (strings, relative to the
dataset's folder). Every row is checked at load time (image headers only); pixels are decoded when a sample
is read. A bad row fails with a ``DatasetFormatError`` naming the file and the row.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perception_env.data.loaders._records import check_index, check_inside, declared_size
from perception_env.data.loaders.errors import Where
from perception_env.data.loaders.images import read_header, to_rgb
from perception_env.data.loaders.jsonl import IMAGE_FIELDS, RecordSchema, get_schema
from perception_env.data.sample import Sample


class _NamedBytes(io.BytesIO):
    """Image bytes that errors name by their row (``read_header`` names what it reads)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.label = name

    def __str__(self) -> str:
        return self.label


class HfDataset:
    """Samples in ``schema`` (a task's :class:`~perception_env.data.loaders.jsonl.RecordSchema`, or a
    built-in one's name) from a local Hugging Face dataset (see the module docstring).

    Arguments: ``path``, ``schema``, ``split`` (the ``DatasetDict`` split or the parquet files' prefix),
    ``columns`` (schema field -> column name), ``categories`` (detection class names in id order; default:
    the sorted distinct labels), ``name``, ``check_coordinates``. Sample ``meta``: ``row`` (0-based).
    """

    def __init__(
        self,
        path: str | Path,
        schema: RecordSchema | str,
        *,
        split: str = "train",
        columns: Mapping[str, str] | None = None,
        categories: Sequence[str] | None = None,
        name: str | None = None,
        check_coordinates: bool = True,
    ):
        self.schema = get_schema(schema)
        self.path = Path(path)
        self.name = name or self.path.stem
        self._folder = self.path if self.path.is_dir() else self.path.parent
        data, self._file = _load(self.path, split)
        self._mapping = _column_mapping(
            columns, (*IMAGE_FIELDS, *self.schema.fields), data.column_names, self._file
        )
        self._data = _undecoded_images(data, self._mapping["image"])
        self._samples = [
            self._sample(index, row, check_coordinates) for index, row in enumerate(self._records())
        ]
        labels = sorted({label for s in self._samples for label in s.labels})
        self.categories = tuple(categories) if categories is not None else tuple(labels)
        for s in self._samples:
            if set(s.labels) - set(self.categories):
                raise Where(self._file, f"row {s.meta['row']}").error(
                    f"labels {sorted(set(s.labels) - set(self.categories))} are not in the given categories"
                )
        self.dropped: dict[str, int] = {}

    def _records(self):
        """Each row as a JSONL-schema record (the mapped columns renamed to the schema's fields)."""
        present = {f: c for f, c in self._mapping.items() if c in self._data.column_names}
        for row in self._data.select_columns(sorted(set(present.values()))):
            yield {f: row[c] for f, c in present.items()}

    def _sample(self, index: int, record: dict, check_coordinates: bool) -> Sample:
        where = Where(self._file, f"row {index}")
        fields = self.schema.parse(record, where)
        image = record.get("image")
        header = read_header(self._image_source(image, where), where)
        width, height = header.stored_size
        declared = declared_size(record, where)
        if declared is not None and declared != (width, height):
            raise where.error(
                f"declared size {declared[0]}x{declared[1]} differs from the image: {width}x{height}"
            )
        if check_coordinates:
            check_inside(fields, width, height, where)
        return Sample(
            sample_id=f"{self.name}/{index}",
            width=width,
            height=height,
            image_path=str(self._image_source(image, where)) if isinstance(image, str) else None,
            meta={"row": index},
            origin=f"{self._file}, row {index}",
            **fields,
        )

    def _image_source(self, image: Any, where: Where) -> Path | _NamedBytes:
        """A path or the bytes of a row's image (``datasets.Image`` undecoded: ``{"bytes", "path"}``)."""
        if isinstance(image, dict) and image.get("bytes"):
            return _NamedBytes(image["bytes"], f"the image of {where.file}, {where.entry}")
        path = image.get("path") if isinstance(image, dict) else image
        if not isinstance(path, str) or not path:
            raise where.error(
                f"column {self._mapping['image']!r} holds no image (datasets.Image, or a path): {image!r:.60}"
            )
        resolved = Path(path) if Path(path).is_absolute() else self._folder / path
        if not resolved.is_file():
            raise FileNotFoundError(f"image not found: {resolved} ({where.file}, {where.entry})")
        return resolved

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        sample = self._samples[check_index(index, len(self), self.name)]
        if sample.image_path is not None:  # read by Sample.load_image, as the other loaders' samples
            return sample
        where = Where(self._file, f"row {index}")
        source = self._image_source(self._data[index][self._mapping["image"]], where)
        from PIL import Image

        with Image.open(source) as im:
            return dataclasses.replace(sample, image=to_rgb(im))


def _load(path: Path, split: str):
    """``(dataset, file named in errors)`` for ``path`` (module docstring); FileNotFoundError if absent."""
    import datasets

    if not path.exists():
        raise FileNotFoundError(
            f"Hugging Face dataset not found: {path} (a save_to_disk folder or parquet files)"
        )
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        loaded = datasets.load_from_disk(str(path))
        if split not in loaded:
            raise ValueError(f"{path} has the splits {sorted(loaded)}, not {split!r}")
        return loaded[split], path / split
    if path.is_dir() and (path / "state.json").is_file():
        return datasets.load_from_disk(str(path)), path
    files = _parquet_files(path, split)
    return datasets.Dataset(_read_parquet(files)), files[0]


def _read_parquet(files: list[Path]):
    """The files as one in-memory table, their Hugging Face features kept (no cache written, no network)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    return InMemoryTable(pa.concat_tables([pq.read_table(f) for f in files]))


def _parquet_files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        return [path]
    every = sorted(path.rglob("*.parquet"))
    of_split = [f for f in every if f.name.startswith(f"{split}-") or f.stem == split]
    if not every:
        raise FileNotFoundError(f"no parquet files in {path} (nor a save_to_disk dataset)")
    return of_split or every


def _column_mapping(
    columns: Mapping[str, str] | None, fields: Sequence[str], names: Sequence[str], file: Path
) -> dict[str, str]:
    """Schema field -> column: the field's own name unless ``columns`` maps it; unknown keys or columns fail."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(fields))
    if unknown:
        raise ValueError(f"columns= maps unknown fields {unknown}; the fields are {list(fields)}")
    missing = sorted(c for c in columns.values() if c not in names)
    if missing:
        raise ValueError(f"columns= names {missing}, not columns of {file}: {list(names)}")
    mapping = {field: columns.get(field, field) for field in fields}
    if mapping["image"] not in names:
        raise ValueError(
            f"{file} has no image column {mapping['image']!r} (its columns: {list(names)}); "
            f"name it with columns={{'image': ...}}"
        )
    return mapping


def _undecoded_images(data, column: str):
    """``data`` whose image column reads as ``{"bytes", "path"}`` (headers are read, pixels only on use)."""
    import datasets

    if isinstance(data.features[column], datasets.Image):
        return data.cast_column(column, datasets.Image(decode=False))
    return data
