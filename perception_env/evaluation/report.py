"""The evaluation's outputs: ``predictions.jsonl``, ``metrics.json``, a markdown table like the paper's and,
given the env evaluated, ``report.html`` (every sample drawn: :mod:`.html_report`) and, for detection, the
COCO files ``detections.json`` and ``ground_truth.json`` (:mod:`.detections`).

Metrics are stored as fractions (``metrics.json``); the table (:mod:`.table`) shows them in the paper's
units. A metric without a value (no ground truth in that COCO area range) is ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perception_env.evaluation.table import markdown_table


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
    r"""Write ``predictions.jsonl``, ``metrics.json`` (``run``) and ``table.md`` into ``out_dir``, and with
    ``env`` (the env the records answered) what :func:`write_views` writes.

    Any ``str`` is written, lone surrogates included (as JSON ``\uXXXX`` escapes, read back exactly).
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
