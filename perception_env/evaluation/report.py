"""The evaluation's outputs: ``predictions.jsonl``, ``metrics.json`` and a markdown table like the paper's.

Metrics are stored as fractions (``metrics.json``); the table shows the
paper's units: percentages with one decimal (edit distance too: the paper's
PageOCR "3.5" is a normalised edit distance of 0.035), errors in objects with
two decimals. A metric without a value (no ground truth in that COCO area
range) is ``null`` in JSON and ``–`` in the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# the columns every table ends with: (metrics key, column header, kind); kind: "pct", "num", "int"
COMMON_COLUMNS = [("n", "n", "int"), ("reward", "reward", "num"), ("success", "success", "pct")]
# mean lengths (evaluation.tasks.length_metrics), after those, where a run has them; thinking's tag share
LENGTH_COLUMNS = [
    ("answer_chars", "answer chars", "num"),
    ("thinking_chars", "thinking chars", "num"),
    ("tags_ok", "think tags ok", "pct"),
]


def task_columns() -> dict[str, list[tuple[str, str, str]]]:
    """Each task's own columns (its class's ``report_columns``), in the paper's order, tasks in list order."""
    from perception_env.tasks import TASKS

    return {name: list(task.report_columns) for name, task in TASKS.items()}


def __getattr__(name: str):
    if name == "COLUMNS":  # as before: task -> its columns, now read off the task list
        return task_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    and the length columns that at least one run has."""
    cols = [c for c in task_columns()[task] if any(c[0] in m for m in metrics_list)]
    lengths = [c for c in LENGTH_COLUMNS if any(c[0] in m for m in metrics_list)]
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


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# A model's answer may hold lone surrogates (U+D800..U+DFFF, e.g. from a "surrogatepass" decode) that
# UTF-8 cannot encode. "backslashreplace" writes each as the 6 characters \ud800: inside a JSON string
# that is the JSON escape of the same code point, so the file stays valid UTF-8 JSON and json.loads
# gives the answer back unchanged. Text that UTF-8 can encode is written as is.
_UTF8_ERRORS = "backslashreplace"


def write_outputs(
    out_dir: str | Path, run: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> dict[str, Path]:
    """Write ``predictions.jsonl``, ``metrics.json`` (``run``) and ``table.md`` into ``out_dir``.

    Any ``str`` is written, lone surrogates included (as JSON ``\\uXXXX`` escapes, read back exactly).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out / "predictions.jsonl",
        "metrics": out / "metrics.json",
        "table": out / "table.md",
    }
    with paths["predictions"].open("w", encoding="utf-8", errors=_UTF8_ERRORS) as f:
        for record in records:
            f.write(json.dumps(_json_safe(record), ensure_ascii=False) + "\n")
    metrics = json.dumps(_json_safe(dict(run)), indent=2, ensure_ascii=False) + "\n"
    paths["metrics"].write_text(metrics, encoding="utf-8", errors=_UTF8_ERRORS)
    table = markdown_table([run])
    notes = run.get("notes") or []
    if notes:
        table += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    paths["table"].write_text(table, encoding="utf-8", errors=_UTF8_ERRORS)
    return paths


def load_runs(paths: Sequence[str | Path]) -> list[dict]:
    """``metrics.json`` files (or folders holding one) -> runs for :func:`markdown_table`."""
    runs = []
    for p in paths:
        p = Path(p)
        runs.append(json.loads((p / "metrics.json" if p.is_dir() else p).read_text(encoding="utf-8")))
    return runs
