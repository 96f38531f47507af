"""Build the teaching notebooks from their sources, run them and save them with their outputs.

    .venv/bin/python scripts/build_notebooks.py                 # every examples/notebooks/*.py
    .venv/bin/python scripts/build_notebooks.py 02_grpo_step    # one of them (name with or without .py)
    .venv/bin/python scripts/build_notebooks.py --check         # do the committed .ipynb match their sources?

A notebook's source is a Python file in the percent format (as jupytext writes it): ``# %%`` starts a code
cell, ``# %% [markdown]`` a Markdown cell whose lines are comments (``# `` is dropped). The sources are
what to edit and review; the .ipynb beside each is generated, executed (nbclient, the ``python3`` kernel of
this interpreter, cwd the repository root) and saved with its outputs, so that it reads on a code host
without running. tests/test_notebooks.py runs every committed notebook again and checks the sources match.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"
CELL_TIMEOUT_S = 600  # one cell; the tests bound each whole notebook themselves
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def sources() -> list[Path]:
    """The notebooks' sources, in their numbered order."""
    return sorted(NOTEBOOKS.glob("[0-9]*.py"))


def _cell(kind: str, lines: list[str]):
    while lines and not lines[-1].strip():  # blank lines between cells belong to neither
        lines.pop()
    if kind == "markdown":
        text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines)
        return nbformat.v4.new_markdown_cell(text)
    return nbformat.v4.new_code_cell("\n".join(lines))


def cells_from_source(text: str) -> list:
    """The cells of a percent-format source: ``[nbformat cell]`` in order; text before the first ``# %%``
    is not allowed (it would belong to no cell)."""
    cells, kind, lines = [], None, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            if kind is not None:
                cells.append(_cell(kind, lines))
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is None:
            if line.strip():
                raise ValueError(f"line {number}: text before the first '# %%' cell marker")
        else:
            lines.append(line)
    if kind is not None:
        cells.append(_cell(kind, lines))
    return cells


def notebook_from_source(path: Path):
    """An unexecuted notebook of ``path``'s cells (cell ids numbered, so rebuilding gives the same file)."""
    notebook = nbformat.v4.new_notebook(
        cells=cells_from_source(path.read_text()),
        metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}},
    )
    for k, cell in enumerate(notebook.cells):
        cell.id = f"cell-{k:02d}"
    return notebook


@dataclass(frozen=True)
class Timing:
    """One run of a notebook: wall seconds, and CPU seconds of its kernel (user + system, the kernel's own
    children included; on a machine shared with other jobs the wall time grows, the CPU time hardly)."""

    wall_s: float
    cpu_s: float


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # processes started here, once they ended
    return usage.ru_utime + usage.ru_stime


def execute(notebook, timeout: int = CELL_TIMEOUT_S) -> Timing:
    """Run every cell of ``notebook`` in place (outputs kept in it), in a new kernel that ends with it.
    A cell that raises raises :class:`nbclient.exceptions.CellExecutionError` with the cell's traceback.
    ``timeout``: seconds one cell may take."""
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # no timestamps in the saved file: a rebuild changes only what changed
        resources={"metadata": {"path": str(ROOT)}},
    )
    wall, cpu = time.perf_counter(), _children_cpu_s()
    client.execute()  # the kernel is shut down and waited for: its CPU time is counted in RUSAGE_CHILDREN
    return Timing(time.perf_counter() - wall, _children_cpu_s() - cpu)


def same_cells(a, b) -> bool:
    """Whether two notebooks have the same cells (kind and source), whatever their outputs."""
    return [(c.cell_type, c.source) for c in a.cells] == [(c.cell_type, c.source) for c in b.cells]


def stale(path: Path) -> str | None:
    """Why the committed notebook of source ``path`` does not match it, or None."""
    built = path.with_suffix(".ipynb")
    if not built.is_file():
        return f"{built.name} is missing"
    if not same_cells(nbformat.read(built, as_version=4), notebook_from_source(path)):
        return f"{built.name} differs from {path.name}"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="notebooks to build (default: all)")
    parser.add_argument("--check", action="store_true", help="only say which .ipynb are out of date")
    args = parser.parse_args(argv)
    chosen = [p for p in sources() if not args.names or p.stem in {Path(n).stem for n in args.names}]
    if not chosen:
        raise SystemExit(f"no notebook source in {NOTEBOOKS} matches {args.names}")
    if args.check:
        problems = [problem for p in chosen if (problem := stale(p))]
        for problem in problems:
            print(f"{problem}: run .venv/bin/python scripts/build_notebooks.py")
        raise SystemExit(1 if problems else 0)
    for path in chosen:
        notebook = notebook_from_source(path)
        timing = execute(notebook)
        nbformat.write(notebook, path.with_suffix(".ipynb"))
        print(
            f"{path.with_suffix('.ipynb').relative_to(ROOT)}: ran in {timing.wall_s:.0f} s"
            f" ({timing.cpu_s:.0f} s of CPU)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
