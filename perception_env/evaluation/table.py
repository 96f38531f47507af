"""The metrics table: each task's columns (its class's ``report_columns``) and cells in the paper's units.

Metrics are fractions; a cell shows percentages with one decimal (edit distance too: the paper's PageOCR
"3.5" is a normalised edit distance of 0.035), errors in objects with two decimals, and ``–`` for a metric
without a value (no ground truth in that COCO area range). ``table.md`` (:mod:`.report`) and the metrics
table of ``report.html`` (:mod:`.html_report`) are both drawn from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from perception_env.tasks import TASKS

# the columns every table ends with: (metrics key, column header, kind); kind: "pct", "num", "int"
COMMON_COLUMNS = [("n", "n", "int"), ("reward", "reward", "num"), ("success", "success", "pct")]
# mean lengths (evaluation.tasks.length_metrics), after those, where a run has them; the thinking ones only
# where a run thinks (its metrics carry "tags_ok", which length_metrics adds for thinking answers alone):
# a run without thinking has thinking_chars 0.00 by definition, a column that says nothing
LENGTH_COLUMNS = [("answer_chars", "answer chars", "num")]
THINKING_COLUMNS = [("thinking_chars", "thinking chars", "num"), ("tags_ok", "think tags ok", "pct")]


def task_columns() -> dict[str, list[tuple[str, str, str]]]:
    """Each task's own columns (its class's ``report_columns``), in the paper's order, tasks in list order."""
    return {name: list(task.report_columns) for name, task in TASKS.items()}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_value(value: Any, kind: str) -> str:
    """One table cell: ``pct`` -> 100*x with one decimal, ``num`` -> two decimals, ``int``; missing -> ``–``."""
    if _missing(value):
        return "–"
    if kind == "pct":
        return f"{100.0 * float(value):.1f}"
    if kind == "int":
        return str(int(value))
    return f"{float(value):.2f}"


def columns_for(task: str, metrics_list: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """The task's columns that at least one run has (so only one METEOR variant shows), the common ones,
    the length columns that at least one run has, and the thinking ones where at least one run thinks."""
    cols = [c for c in task_columns()[task] if any(c[0] in m for m in metrics_list)]
    thinking = any("tags_ok" in m for m in metrics_list)
    lengths = [
        c for c in LENGTH_COLUMNS + THINKING_COLUMNS * thinking if any(c[0] in m for m in metrics_list)
    ]
    return cols + COMMON_COLUMNS + lengths


def markdown_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Markdown tables, one per task, one row per run.

    A run is a ``metrics.json`` dict: ``task``, ``benchmark``, ``agent`` (row
    label) and ``metrics``. Runs of several tasks give several tables, each
    under a ``### task`` heading.
    """
    blocks = []
    for task in task_columns():
        rows = [r for r in runs if r["task"] == task]
        if not rows:
            continue
        cols = columns_for(task, [r["metrics"] for r in rows])
        header = ["benchmark", "model"] + [c[1] for c in cols]
        lines = [
            f"### {task}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] * 2 + ["---:"] * len(cols)) + "|",
        ]
        for r in rows:
            cells = [str(r["benchmark"]), str(r["agent"])]
            cells += [format_value(r["metrics"].get(key), kind) for key, _, kind in cols]
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
