"""``report.html``: every sample of an evaluation as a card, in one self-contained file (no server, no network).

The page holds the metrics table, then one card per sample: its image (embedded as PNG or JPEG, base64),
the targets and predictions drawn over it as SVG (targets green, matched predictions blue, unmatched red:
the colours of :mod:`perception_env.render`), the prompt, the raw answer, the parse problems, the reward
and its components. Cards sort and filter by reward, failure reason and class (worst first by default);
j/k or the arrow keys move between them. The page renders cards in batches as they scroll into view and
gives an image its pixels only when its card is near the viewport, so 5,000 samples load without freezing.

Its data is the evaluation's ``predictions.jsonl`` records, embedded as JSON, so
``perception-r1 report RUN_DIR`` writes it again from a run folder. Two evaluations of the same samples
show side by side (``--compare``), each card with the change in reward.

The page's script and style are package data (``report_assets/``); the layout of the page is
``report_assets/report.html`` with ``<!--slot:NAME-->`` markers filled here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from perception_env.evaluation.table import columns_for, format_value
from perception_env.render import MATCHED, TARGET, UNMATCHED

ASSETS = Path(__file__).with_name("report_assets")
# Longest side (px) of an embedded image: a card draws its image 448 px wide; larger images are
# downscaled to this (a 640x480 COCO photo to 448x336), smaller ones are drawn larger by the browser.
DISPLAY_SIDE = 448
# A PNG larger than this (bytes) is written as JPEG instead: flat synthetic images and text pages stay
# lossless (a 224 px shapes image is ~3 kB), a 640x480 photograph becomes a ~30 kB JPEG (~42 kB of base64).
PNG_BUDGET = 24_000
JPEG_QUALITY = 80
# the failure reason of a sample that passed the task's verdict
PASSED = "passed"


def image_data_uri(image: np.ndarray, max_side: int = DISPLAY_SIDE) -> str:
    """``data:image/...;base64,...`` of an ``[H, W, 3]`` uint8 image, downscaled so its longest side is at
    most ``max_side`` (never upscaled); PNG unless a JPEG is needed to keep it under ``PNG_BUDGET``."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.dtype != np.uint8:
        raise ValueError(f"an image must be [H, W, 3] uint8, got {array.shape} {array.dtype}")
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")
    scale = max_side / max(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    kind = "png"
    if buffer.tell() > PNG_BUDGET:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        kind = "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _parsed(record: Mapping[str, Any]) -> Mapping[str, Any]:
    parsed = record.get("parsed")
    return parsed if isinstance(parsed, Mapping) else {}


def _target(record: Mapping[str, Any]) -> Mapping[str, Any]:
    target = record.get("target")
    return target if isinstance(target, Mapping) else {}


def prediction_matches(record: Mapping[str, Any]) -> dict[int, int | None]:
    """Prediction index -> the target it earned reward on (None: it earned nothing), for every predicted box
    or point, as :func:`perception_env.render.render_sample` colours them (a pair without ``tp`` counts)."""
    parsed = _parsed(record)
    n_pred = max(len(parsed.get("boxes") or []), len(parsed.get("points") or []))
    out: dict[int, int | None] = dict.fromkeys(range(n_pred))
    for pair in record.get("matching") or []:
        pred = pair.get("pred")
        if isinstance(pred, int) and pred in out and pair.get("tp", True):
            out[pred] = pair.get("target")
    return out


def failure_tags(record: Mapping[str, Any]) -> list[str]:
    """Why a sample failed, as a few fixed words to filter by (``["passed"]`` when it did not fail).

    ``malformed answer`` (not in the format), ``parse problems`` (read, with problems), ``missed objects``
    (targets no prediction earned reward on), ``extra objects`` (predictions that earned nothing),
    ``wrong label`` (a matched box of the wrong class), ``wrong count``, ``misread text``; a failed sample
    with none of these is ``below the bar`` (e.g. every object found, one IoU under the threshold).
    """
    if record.get("is_success"):
        return [PASSED]
    parsed, target = _parsed(record), _target(record)
    tags = []
    if not parsed.get("well_formed", False):
        tags.append("malformed answer")
    elif parsed.get("problems"):
        tags.append("parse problems")
    n_targets = max(len(target.get("boxes") or []), len(target.get("points") or []))
    matches = prediction_matches(record)
    has_objects = n_targets > 0 or len(matches) > 0
    if has_objects and parsed.get("count") is None:
        if len({t for t in matches.values() if t is not None}) < n_targets:
            tags.append("missed objects")
        if any(t is None for t in matches.values()):
            tags.append("extra objects")
        if any(p.get("tp", True) and p.get("label_ok") is False for p in record.get("matching") or []):
            tags.append("wrong label")
    if parsed.get("count") is not None and parsed.get("count") != n_targets:
        tags.append("wrong count")
    if target.get("text") and parsed.get("text") != target.get("text"):
        tags.append("misread text")
    return tags or ["below the bar"]


def record_classes(record: Mapping[str, Any]) -> list[str]:
    """The classes a sample is about: its targets' labels and the labels predicted, sorted."""
    labels = list(_target(record).get("labels") or []) + list(_parsed(record).get("labels") or [])
    return sorted({str(label) for label in labels if label})


def card_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the page needs beyond the record: failure tags, classes, and per prediction the target it
    matched (``null``: unmatched, drawn red)."""
    matches = prediction_matches(record)
    return {
        "tags": failure_tags(record),
        "classes": record_classes(record),
        "matched": [matches[k] for k in sorted(matches)],
    }


def _script_json(value: Any) -> str:
    r"""JSON for a ``<script type="application/json">``: every ``<`` escaped (``\u003c``), so no text in it can
    close the script; non-finite floats are ``null``."""
    return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")


def _finite(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


def metrics_table_html(runs: Sequence[Mapping[str, Any]]) -> str:
    """The metrics table of ``table.md`` as HTML: one row per run, the paper's units."""
    task = runs[0]["task"]
    cols = columns_for(task, [r.get("metrics") or {} for r in runs])
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["benchmark", "model"] + [c[1] for c in cols])
    rows = []
    for r in runs:
        cells = [str(r.get("benchmark", "")), str(r.get("agent", ""))]
        cells += [format_value((r.get("metrics") or {}).get(key), kind) for key, _, kind in cols]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def align_runs(
    records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]]
) -> tuple[list[int], list[int]]:
    """Positions ``(in_a, in_b)`` of the samples both evaluations answered (same ``index`` and
    ``sample_id``), in A's order."""
    where_b = {(r.get("index"), r.get("sample_id")): k for k, r in enumerate(records_b)}
    in_a, in_b = [], []
    for k, r in enumerate(records_a):
        j = where_b.get((r.get("index"), r.get("sample_id")))
        if j is not None:
            in_a.append(k)
            in_b.append(j)
    return in_a, in_b


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def build_report(
    run: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    images: Sequence[str | None],
    *,
    compare: tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The page's HTML. ``images[k]``: record ``k``'s image as a data URI (:func:`image_data_uri`), or
    None (its boxes are drawn on a blank canvas of ``image_size``). ``compare``: another evaluation's
    ``(run, records)``; only the samples both answered are shown, side by side."""
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images for {len(records)} records")
    runs = [run]
    records_b: list[Mapping[str, Any]] | None = None
    notes = [str(n) for n in run.get("notes") or []]
    if compare is not None:
        run_b, all_b = compare
        if run_b.get("task") != run.get("task"):
            raise ValueError(f"cannot compare a {run.get('task')} evaluation with a {run_b.get('task')} one")
        in_a, in_b = align_runs(records, all_b)
        if not in_a:
            raise ValueError("the two evaluations have no sample in common (same index and sample_id)")
        left_out = len(records) + len(all_b) - 2 * len(in_a)
        if left_out:
            notes.append(f"{left_out} samples answered by only one of the two evaluations are not shown")
        records, images = [records[k] for k in in_a], [images[k] for k in in_a]
        records_b = [all_b[k] for k in in_b]
        runs.append(run_b)
    title = f"{run.get('agent', '?')} on {run.get('benchmark', '?')}"
    if records_b is not None:
        title = f"{run.get('agent', '?')} vs {runs[1].get('agent', '?')} on {run.get('benchmark', '?')}"
    from perception_env.tasks import TASKS

    task = TASKS.get(str(run.get("task")))  # what its render draws: labels (detection), points (counting)
    config = {
        "task": run.get("task"),
        "draw_labels": bool(getattr(task, "render_labels", False)),
        "draw_points": bool(getattr(task, "render_points", False)),
        "labels": [str(r.get("agent", "?")) for r in runs],
        "colours": {
            "target": "rgb({},{},{})".format(*TARGET),
            "matched": "rgb({},{},{})".format(*MATCHED),
            "unmatched": "rgb({},{},{})".format(*UNMATCHED),
        },
    }
    data = [
        ("report-config", config),
        ("records", list(records)),
        ("views", [card_view(r) for r in records]),
    ]
    if records_b is not None:
        data += [("records-b", records_b), ("views-b", [card_view(r) for r in records_b])]
    scripts = "\n".join(
        f'<script type="application/json" id="{name}">{_script_json(value)}</script>' for name, value in data
    )
    # each image in an element of its own, read when its card nears the viewport: a page of 5,000 photos
    # (~220 MB) is never parsed as one JSON string
    scripts += "".join(
        f'\n<script type="text/plain" id="image-{k}">{uri}</script>' for k, uri in enumerate(images) if uri
    )
    header = f"<h1>{html.escape(title)}</h1>\n{metrics_table_html(runs)}"
    if notes:
        header += "\n<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    page = _asset("report.html")
    for slot, text in (
        ("title", html.escape(title)),
        ("style", _asset("report.css")),
        ("header", header),
        ("data", scripts),
        ("script", _asset("report.js")),
    ):
        page = page.replace(f"<!--slot:{slot}-->", text, 1)
    return page


# As report.py: a lone surrogate of an answer is written as the 6 characters \ud800, inside a JSON string the
# escape of the same code point, so the page's JSON.parse gives the answer back.
_UTF8_ERRORS = "backslashreplace"


def write_report(
    path: str | Path,
    run: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    images: Sequence[str | None],
    *,
    compare: tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Write :func:`build_report`'s page to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        build_report(run, records, images, compare=compare), encoding="utf-8", errors=_UTF8_ERRORS
    )
    return path
