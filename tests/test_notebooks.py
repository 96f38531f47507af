"""The notebooks of examples/notebooks: each committed .ipynb is its source's cells with their outputs saved,
and runs again from scratch without an error, printing what it promises (slow: one to three minutes each)."""

from __future__ import annotations

import ast
import sys

import nbformat  # the viz extra (scripts/setup.sh installs it)
import pytest

from tests.documented import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import build_notebooks  # noqa: E402

# what each notebook must print (stdout text of its cells), whatever its random numbers
KEY_OUTPUTS = {
    "01_envs": [
        "objects out of place -> env reward (Hungarian) | in-order mean IoU",
        "OCR-v0, oracle: reward 1.00 of 1",
    ],
    "02_grpo_step": [
        "iteration 1: loss -0.000000",  # on-policy: the ratio is 1, the loss is -mean(A) = 0
        "largest weight difference between the two: 0.00e+00",  # the cells above = agent.update
        "rloo.update: loss",
    ],
    "03_train_grounding": ["held-out Acc@0.5 before GRPO", "zero-variance", "SFT control"],
    "04_plug_in": [
        "the wrapper and the env option agree on every answer: True",
        "2 steps on the stacked wrappers",
    ],
}
BUDGET_S = 180  # the bound for one notebook on a 2-core CPU


def _stdout(notebook) -> str:
    return "".join(
        o.get("text", "")
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )


def _images(notebook) -> int:
    return sum(
        "image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )


def test_every_notebook_has_its_checks():
    assert sorted(KEY_OUTPUTS) == [p.stem for p in build_notebooks.sources()]


@pytest.mark.parametrize("name", sorted(KEY_OUTPUTS))
def test_the_committed_notebook_is_its_source_run_with_outputs(name):
    source = build_notebooks.NOTEBOOKS / f"{name}.py"
    assert build_notebooks.stale(source) is None, "run: .venv/bin/python scripts/build_notebooks.py " + name
    notebook = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "saved without running every cell"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert _images(notebook) >= 2  # plots saved as PNG: the notebook reads on a code host
    text = _stdout(notebook)
    for expected in KEY_OUTPUTS[name]:
        assert expected in text, expected


def test_sources_split_into_cells_by_the_percent_markers():
    text = "# %% [markdown]\n# # Title\n#\n# words\n\n# %%\nx = 1\n\n\n# %%\nprint(x)\n"
    cells = build_notebooks.cells_from_source(text)
    assert [(c.cell_type, c.source) for c in cells] == [
        ("markdown", "# Title\n\nwords"),
        ("code", "x = 1"),
        ("code", "print(x)"),
    ]
    with pytest.raises(ValueError, match="line 1: text before the first"):
        build_notebooks.cells_from_source("import os\n# %%\nx = 1\n")


def _definitions(path, names) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    return {n.name: ast.dump(n) for n in tree.body if getattr(n, "name", None) in names}


def test_the_plug_in_notebook_defines_the_custom_agent_example_as_it_is():
    names = {"ReinforceConfig", "ReinforceAgent", "AnswerLengthBonus"}
    example = _definitions(ROOT / "examples" / "custom_agent.py", names)
    assert sorted(example) == sorted(names)
    assert _definitions(build_notebooks.NOTEBOOKS / "04_plug_in.py", names) == example


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KEY_OUTPUTS))
def test_the_notebook_runs_from_scratch(name, tmp_path):
    notebook = nbformat.read(build_notebooks.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    try:
        timing = build_notebooks.execute(notebook)  # a cell that raises fails here, with its traceback
    finally:
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")  # what ran, to open when something is off
    print(
        f"{name}: ran in {timing.wall_s:.0f} s, {timing.cpu_s:.0f} s of CPU -> {tmp_path / f'{name}.ipynb'}"
    )
    text = _stdout(notebook)
    for expected in KEY_OUTPUTS[name]:
        assert expected in text, expected
    assert _images(notebook) >= 2
    # CPU, not wall: the notebooks train single-threaded, so on an idle 2-core machine wall ~ CPU, while on a
    # shared one the wall time measures the other jobs too
    assert timing.cpu_s < BUDGET_S, f"{name} took {timing.cpu_s:.0f} s of CPU (budget {BUDGET_S} s)"
