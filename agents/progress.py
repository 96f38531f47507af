"""Progress shown while a long loop runs: a tqdm bar, or a line of counts in the base install (no tqdm)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, leave: bool = True) -> Iterator[Any]:
    """A ``progress(done, n)`` callback drawing a tqdm bar on stderr (nothing when not ``enabled``; a line
    of counts in the base install, which has no tqdm)."""
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:
        yield _count_line(description)
        return

    with tqdm(
        total=total, desc=description, unit="sample", dynamic_ncols=True, mininterval=1.0, leave=leave
    ) as bar:

        def progress(done: int, n: int) -> None:
            bar.total = n
            bar.update(done - bar.n)

        yield progress


def _count_line(description: str):
    t0 = time.perf_counter()

    def progress(done: int, n: int) -> None:
        rate = done / max(time.perf_counter() - t0, 1e-9)
        end = "" if done < n else "\n"
        print(f"\r{description}: {done}/{n} samples ({rate:.1f}/s)", end=end, file=sys.stderr, flush=True)

    return progress
