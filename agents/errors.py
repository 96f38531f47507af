"""The errors a setting can raise before any work starts: the command line prints their message alone.

Their own module, below every other, so that the console's first screen (``perception-r1 --help``, or a
missing model folder) can name them without loading the options, and with them perception_env.
"""

from __future__ import annotations


class SetupError(ValueError):
    """A setting, or a file a setting names, that cannot work, found before the work it would spoil.

    The command line prints the message alone (no traceback): it names the flag or the file and what is wrong.
    """


class MissingFileError(SetupError, FileNotFoundError):
    """A folder or file a setting names does not exist (or lacks a piece the run needs)."""
