"""An evaluation's folder (predictions.jsonl, metrics.json, table.md, report.html): the trainer's written as
``perception-r1 eval`` writes its own, and read back for ``perception-r1 report``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def benchmark_label(dataset_name: str, split: str) -> str:
    """The benchmark's name as tables show it, e.g. "coco val", or "refcoco-val" for a loader whose name
    already carries the split (in any case), which is not told it twice."""
    if not split or dataset_name.casefold().endswith(f"-{split}".casefold()):
        return dataset_name
    return f"{dataset_name} {split}"


def write_training_evaluation(
    out_dir: str | Path, env, result: dict[str, Any], label: str, **fields: Any
) -> dict[str, Path]:
    """An evaluation made while training (:func:`agents.trainer.evaluate`'s result, with its ``records``)
    written as ``perception-r1 eval`` writes one: predictions.jsonl, metrics.json, table.md, report.html
    and a detection's COCO files. ``label``: the row label (``step 200``); ``fields``: more of metrics.json.

    metrics.json names the env as ``gym.make`` made it (its spec), so that ``perception-r1 report`` rebuilds
    it; an env made from objects (not JSON) is written without, and ``report`` then needs ``--no-images``.
    """
    import json

    from perception_env.evaluation.report import write_outputs

    spec = getattr(env, "spec", None)
    env_id, env_kwargs = (spec.id, dict(spec.kwargs or {})) if spec is not None else (None, None)
    try:
        json.dumps(env_kwargs)
    except TypeError:
        env_id, env_kwargs = None, None
    u = env.unwrapped
    run = {
        "task": u.task,
        "benchmark": benchmark_label(getattr(u.dataset, "name", "data"), (env_kwargs or {}).get("split", "")),
        "agent": label,
        "metrics": result["metrics"],
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "answer_format": u.answer_format.name,
        "samples": len(result["records"]),
        "notes": list(result.get("notes") or []),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **fields,
    }
    return write_outputs(out_dir, run, result["records"], env=env)


def read_run(run_dir: str | Path, flag: str = "RUN_DIR") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(metrics.json, predictions.jsonl's records)`` of an evaluation folder; a missing or unreadable file
    is a SetupError naming it."""
    import json

    from agents.config import MissingFileError, SetupError

    folder = Path(run_dir)
    paths = [folder / "metrics.json", folder / "predictions.jsonl"]
    for path in paths:
        if not path.is_file():
            raise MissingFileError(
                f"{flag} {folder}: no {path.name} (the folder `perception-r1 eval` wrote?)"
            )
    try:
        run = json.loads(paths[0].read_text(encoding="utf-8"))
        lines = paths[1].read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SetupError(f"{flag} {folder}: not JSON as the evaluation writes it ({error})") from error
    if not isinstance(run, dict) or "task" not in run:
        raise SetupError(f"{flag} {paths[0]}: not an evaluation's metrics.json (no task)")
    return run, records
