"""The evaluation's outputs: ``predictions.jsonl``, ``metrics.json``, a markdown table like the paper's and,
given the env evaluated, ``report.html`` (every sample drawn: :mod:`.html_report`) and, for detection, the
COCO files ``detections.json`` and ``ground_truth.json`` (:mod:`.detections`).

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
    out_dir: str | Path, run: Mapping[str, Any], records: Sequence[Mapping[str, Any]], *, env: Any = None
) -> dict[str, Path]:
    """Write ``predictions.jsonl``, ``metrics.json`` (``run``) and ``table.md`` into ``out_dir``, and with
    ``env`` (the env the records answered) what :func:`write_views` writes.

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
    if env is not None:
        paths.update(write_views(out, run, records, env))
    return paths


def samples_and_images(
    env: Any, records: Sequence[Mapping[str, Any]], max_side: int | None = None
) -> tuple[list, list[str]]:
    """The sample each record answered (``env.reset(options={"index": record["index"]})``, images dropped)
    and its image as a data URI for the page (:func:`~.html_report.image_data_uri`, longest side at most
    ``max_side`` px)."""
    import dataclasses

    from perception_env.evaluation.html_report import DISPLAY_SIDE, image_data_uri

    u = env.unwrapped
    samples, images = [], []
    for record in records:
        observation, _ = env.reset(options={"index": int(record["index"])})
        sample = u.sample
        size = [sample.width, sample.height]
        if (
            record.get("image_size", size) != size
            or record.get("sample_id", sample.sample_id) != sample.sample_id
        ):
            raise ValueError(
                f"record {record['index']} answered sample {record.get('sample_id')} "
                f"({record.get('image_size')} px), but the env gives sample {sample.sample_id} ({size} px) at "
                "that index: not the env that was evaluated"
            )
        samples.append(dataclasses.replace(sample, image=None))
        images.append(image_data_uri(observation["image"], max_side or DISPLAY_SIDE))
    return samples, images


def write_views(
    out_dir: str | Path,
    run: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    env: Any = None,
    *,
    compare: tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]] | None = None,
    report_name: str = "report.html",
    image_side: int | None = None,
) -> dict[str, Path]:
    """``report.html`` (named ``report_name``; ``compare``: another evaluation's ``(run, records)`` of the
    same samples, side by side) and, for detection (not a comparison), ``detections.json`` and
    ``ground_truth.json``.

    The images and the detection ground truth come from ``env`` (the env the records answered); without
    it the page draws the boxes on blank canvases and no COCO files are written."""
    from perception_env.evaluation.detections import write_coco_files
    from perception_env.evaluation.html_report import write_report
    from perception_env.evaluation.runner import metrics_dataset

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if env is None:
        images: list[str | None] = [None] * len(records)
    else:
        samples, images = samples_and_images(env, records, image_side)  # type: ignore[assignment]
        if run.get("task") == "detection" and records and compare is None:
            paths.update(write_coco_files(out, records, samples, metrics_dataset(env)))
    paths["report"] = write_report(out / report_name, run, records, images, compare=compare)
    return paths


def load_runs(paths: Sequence[str | Path]) -> list[dict]:
    """``metrics.json`` files (or folders holding one) -> runs for :func:`markdown_table`."""
    runs = []
    for p in paths:
        p = Path(p)
        runs.append(json.loads((p / "metrics.json" if p.is_dir() else p).read_text(encoding="utf-8")))
    return runs
