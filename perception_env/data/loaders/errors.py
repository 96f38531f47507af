"""The error a malformed dataset file or image raises, where it points (``Where``), and the warning for
entries a loader leaves out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file (or an image it names) does not match its documented format.

    The message names the file, the entry (``line 12``, ``ref 345``,
    ``annotation 6789``...) and what is wrong; the parts are also attributes.
    """

    def __init__(self, file: str | Path, entry: str | None, problem: str):
        self.file, self.entry, self.problem = str(file), entry, problem
        where = f"{file}, {entry}" if entry else str(file)
        super().__init__(f"{where}: {problem}")


class DroppedEntriesWarning(UserWarning):
    """A loader left entries out (or kept them incomplete); ``dataset.dropped`` counts them per reason."""


@dataclass(frozen=True)
class Where:
    """A dataset file and one entry of it: every check of a loader raises through it, naming both."""

    file: Path
    entry: str | None = None

    def error(self, problem: str) -> DatasetFormatError:
        return DatasetFormatError(self.file, self.entry, problem)

    def at(self, entry: str) -> Where:
        return Where(self.file, entry)
