"""The one error a malformed dataset file raises, at load time."""

from __future__ import annotations

from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file does not match its documented format.

    The message names the file, the entry (``line 12``, ``ref 345``,
    ``annotation 6789``...) and what is wrong; the parts are also attributes.
    """

    def __init__(self, file: str | Path, entry: str | None, problem: str):
        self.file, self.entry, self.problem = str(file), entry, problem
        where = f"{file}, {entry}" if entry else str(file)
        super().__init__(f"{where}: {problem}")
