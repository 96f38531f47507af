"""One call from scored answers to the paper's metrics of their task.

``task_metrics(task, records, samples)`` takes what an evaluation collected: one dict per answer holding
at least ``"parsed"`` (a :meth:`ParsedAnswer.to_info`-style dict: ``boxes``/``points`` in original pixels,
``labels``, ``count``, ``text``) and, when present, ``reward``, ``is_success`` and ``answer_format`` --
an env's ``step`` info is such a dict (its pixels rounded to 0.01 px), and so is a line of the evaluation's
``predictions.jsonl`` (full precision) -- and the samples they answered (the env's ``sample`` after
reset: in the frame the env scored in). The task's own metrics are its class's
(:meth:`~perception_env.core.PerceptionEnv.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perception_env.data.sample import Sample
from perception_env.evaluation.metrics import parsed_of
from perception_env.tasks import get_task


def task_metrics(
    task: str,
    infos: Sequence[Mapping[str, Any]],
    samples: Sequence[Sample],
    *,
    dataset: Any = None,
    categories: Sequence[str] | None = None,
) -> dict[str, float]:
    """The paper's metrics for ``task`` (fractions; see :mod:`perception_env.evaluation.metrics`), plus
    ``n``, mean ``reward``, ``success`` rate and ``well_formed`` rate, and where the infos carry
    ``"reasoning"`` (every env's do) the mean lengths of :func:`length_metrics`.

    ``dataset`` and ``categories`` go to the task's metrics (detection: the dataset's own COCO index, or
    the class names of a ground truth built from ``samples``).
    """
    definition = get_task(task)
    if len(infos) != len(samples):
        raise ValueError(f"{len(infos)} infos for {len(samples)} samples")
    out: dict[str, float] = {"n": float(len(infos))}
    out.update(definition.metrics(infos, samples, dataset=dataset, categories=categories))
    if infos:
        out["reward"] = float(np.mean([float(i.get("reward", 0.0)) for i in infos]))
        out["success"] = float(np.mean([bool(i.get("is_success", False)) for i in infos]))
        out["well_formed"] = float(np.mean([bool(parsed_of(i).get("well_formed", False)) for i in infos]))
    out.update(length_metrics(infos))
    return out


# info["reasoning"] keys averaged by length_metrics (perception_env.reasoning.reasoning_info)
LENGTH_KEYS = ("answer_chars", "answer_words", "thinking_chars", "thinking_words")


def length_metrics(infos: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean answer and thinking lengths (characters and white-space separated words; the answer is the
    ``<answer>`` part of a thinking answer, else the whole answer) over the infos that carry
    ``"reasoning"``; with thinking also ``tags_ok``, the share whose tags follow R1-V's format. ``{}``
    when none carries it (records of an older evaluation)."""
    found = [i["reasoning"] for i in infos if isinstance(i.get("reasoning"), Mapping)]
    if not found:
        return {}
    out = {key: float(np.mean([float(r.get(key, 0)) for r in found])) for key in LENGTH_KEYS}
    if any("tags_ok" in r for r in found):
        out["tags_ok"] = float(np.mean([bool(r.get("tags_ok", False)) for r in found]))
    return out
