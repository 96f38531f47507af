"""A sample's ground truth as one JSON string, and the reward of an answer against it, without the dataset.

Trainers that carry their data in files (verl, EasyR1) hand a reward function the ground truth stored beside
each prompt. :func:`ground_truth` writes everything the env's reward needs: the task, the answer format, the
image frame (``min_pixels`` / ``max_pixels``), the reward options, the reasoning mode (``reasoning``,
``think_format_weight``: a thinking answer is scored on its ``<answer>`` part) and the sample's targets in
pixels of the image as the env shows it. :func:`score_ground_truth` rebuilds the sample and scores with the task's own
env (:meth:`~perception_env.core.PerceptionEnv.score_sample`): the same reward and info as ``env.step``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import numpy as np

from perception_env.core import PerceptionEnv, Scored
from perception_env.data.sample import Sample
from perception_env.reasoning import DEFAULT_THINK_FORMAT_WEIGHT, check_reasoning

VERSION = 1  # of the JSON layout below


def ground_truth(env: PerceptionEnv, sample: Sample) -> str:
    """``sample`` (as ``env`` shows it) and how ``env`` scores answers about it, as a JSON string."""
    config = env.reward_config
    return json.dumps(
        {
            "version": VERSION,
            "task": env.task,
            "answer_format": env.answer_format.name,
            "min_pixels": env.min_pixels,
            "max_pixels": env.max_pixels,
            "reward_config": None if config is None else dataclasses.asdict(config),
            "reasoning": env.reasoning,
            "think_format_weight": env.think_format_weight,
            "sample": {
                "sample_id": sample.sample_id,
                "width": sample.width,
                "height": sample.height,
                "boxes": np.asarray(sample.boxes, dtype=float).tolist(),
                "labels": list(sample.labels),
                "points": np.asarray(sample.points, dtype=float).tolist(),
                "query": sample.query,
                "text": sample.text,
                "iscrowd": [bool(c) for c in sample.iscrowd],
                "count": sample.count,
            },
        },
        ensure_ascii=False,
    )


def score_ground_truth(answer: str, truth: str | dict) -> Scored:
    """``answer`` scored against a :func:`ground_truth` (the string, or it parsed); ``ValueError`` naming
    what is wrong for anything else."""
    record = _parsed(truth)
    settings = {key: record[key] for key in ("task", "answer_format", "min_pixels", "max_pixels")}
    settings["reward_config"] = json.dumps(record["reward_config"], sort_keys=True)
    # absent from ground truths written before the option: answers without thinking, as then
    settings["reasoning"], settings["think_format_weight"] = check_reasoning(
        record.get("reasoning", "none"), record.get("think_format_weight", DEFAULT_THINK_FORMAT_WEIGHT)
    )
    sample = _sample(record["sample"])
    return _env(**settings).score_sample(answer, sample)


def _parsed(truth: str | dict) -> dict[str, Any]:
    if isinstance(truth, str):
        try:
            truth = json.loads(truth)
        except ValueError as error:
            raise ValueError(f"ground truth is not JSON ({error}): {truth[:80]!r}") from None
    if not isinstance(truth, dict) or truth.get("version") != VERSION:
        raise ValueError(
            f"not a perception_env ground truth (version {VERSION}, as perception_env.integrations writes): "
            f"{str(truth)[:80]!r}"
        )
    missing = {"task", "answer_format", "min_pixels", "max_pixels", "reward_config", "sample"} - set(truth)
    if missing:
        raise ValueError(f"ground truth lacks {', '.join(sorted(missing))}")
    return truth


def _sample(fields: dict[str, Any]) -> Sample:
    return Sample(
        sample_id=str(fields["sample_id"]),
        width=int(fields["width"]),
        height=int(fields["height"]),
        boxes=np.asarray(fields["boxes"], dtype=np.float64).reshape(-1, 4),
        labels=tuple(fields["labels"]),
        points=np.asarray(fields["points"], dtype=np.float64).reshape(-1, 2),
        query=fields["query"],
        text=fields["text"],
        iscrowd=tuple(bool(c) for c in fields["iscrowd"]),
        count=fields["count"],
    )


class _OneSample:
    """The dataset an env needs to exist; the samples it scores come from each ground truth."""

    name = "ground-truth"
    categories: tuple[str, ...] = ()

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Sample:
        return Sample("placeholder", 1, 1)


@functools.lru_cache(maxsize=64)
def _env(
    task: str,
    answer_format: str,
    min_pixels: int,
    max_pixels: int,
    reward_config: str,
    reasoning: str,
    think_format_weight: float,
) -> PerceptionEnv:
    """One env per way of scoring (a trainer scores thousands of answers the same way)."""
    from perception_env.tasks import get_task

    return get_task(task)(
        dataset=_OneSample(),
        answer_format=answer_format,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        reward_config=json.loads(reward_config),
        reasoning=reasoning,
        think_format_weight=think_format_weight,
    )
