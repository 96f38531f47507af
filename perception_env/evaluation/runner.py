"""Run an answering agent over an env's dataset and collect what the metrics need. No torch.

An *answerer* is any callable ``answer(env, indices, observations) -> list[str]``
(one answer per observation, ``observations[k]`` being the env's observation
of sample ``indices[k]``). Three reference answerers are here; a model is one
more (``agents.evaluate``):

* ``oracle``: the env's perfect answer, unrounded where the format allows
  (``oracle_answer(exact=True)``): detection AP 100 even for boxes of a few pixels;
* ``empty``: the format's "nothing" answer (``[]``, ``""``, ``0``): AP 0;
* ``random``: ``env.action_space.sample()``, seeded: a floor and a parser fuzz.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gymnasium as gym

from perception_env.core import Scored
from perception_env.data.sample import Sample
from perception_env.evaluation.tasks import task_metrics
from perception_env.rewards.result import jsonable

Answerer = Callable[[gym.Env, Sequence[int], Sequence[dict]], list[str]]


def oracle_answerer(env: gym.Env, indices: Sequence[int], observations: Sequence[dict]) -> list[str]:
    """The env's exact oracle answer for each sample (integer rounding would cost tiny boxes AP@0.95)."""
    answers = []
    for i in indices:
        env.reset(options={"index": i})
        answers.append(env.unwrapped.oracle_answer(exact=True))
    return answers


def empty_answerer(env: gym.Env, indices: Sequence[int], observations: Sequence[dict]) -> list[str]:
    """The answer format's "no objects" / empty answer (``[]``, ``""``, ``0``)."""
    return [env.unwrapped.answer_format.write(frame=None) for _ in indices]


def random_answerer(seed: int = 0) -> Answerer:
    """``env.action_space.sample()`` answers, the action space seeded once with ``seed``."""
    seeded: set[int] = set()

    def answer(env: gym.Env, indices: Sequence[int], observations: Sequence[dict]) -> list[str]:
        if id(env) not in seeded:
            env.action_space.seed(seed)
            seeded.add(id(env))
        return [env.action_space.sample() for _ in indices]

    return answer


REFERENCE_AGENTS: dict[str, Callable[..., Answerer]] = {
    "oracle": lambda seed=0: oracle_answerer,
    "empty": lambda seed=0: empty_answerer,
    "random": random_answerer,
}


@dataclass
class EvaluationResult:
    """Everything one evaluation produced."""

    task: str
    records: list[dict]  # one per sample: the predictions.jsonl lines
    samples: list[Sample]  # as scored (images dropped)
    metrics: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)  # time spent answering / scoring
    notes: list[str] = field(default_factory=list)
    infos: list[dict] = field(default_factory=list)  # one per sample: what env.step returns as info


@dataclass
class Episode:
    """One answer to one sample, scored by the env (``env.unwrapped.score``)."""

    index: int  # the sample's dataset index
    record: dict  # the predictions.jsonl line: its parse at full precision
    info: dict  # what env.step returns as info for the answer
    sample: Sample  # as scored (its image dropped)


def _record(index: int, prompt: str, answer: str, scored: Scored) -> dict:
    """One predictions.jsonl line: ids, prompt, answer, reward, success, parse in ORIGINAL pixels (unrounded)."""
    s, parsed, info = scored.sample, scored.result.parsed, scored.info
    return jsonable(
        {
            "index": index,
            "sample_id": s.sample_id,
            "image_id": s.meta.get("image_id") if isinstance(s.meta, dict) else None,
            "image_size": [s.width, s.height],
            "prompt": prompt,
            "answer": answer,
            "answer_format": info["answer_format"],
            "reward": scored.reward,
            "is_success": info["is_success"],
            "parsed": {
                "well_formed": parsed.well_formed,
                "boxes": parsed.boxes.tolist(),
                "labels": list(parsed.labels),
                "points": parsed.points.tolist(),
                "count": parsed.count,
                "text": parsed.text,
                "problems": list(parsed.problems),
                **({"values": dict(parsed.values)} if parsed.values else {}),  # a task's own format's fields
            },
            "target": info["target"],
            "reward_components": info["reward_components"],
            # pairs of prediction and target indices the reward considered, each with "tp" (earned reward):
            # what report.html colours matched (blue) and unmatched (red)
            "matching": info["matching"],
            "reason": info["reason"],
            "reasoning": info["reasoning"],  # the answer's and thinking's lengths; with thinking, its parts
        }
    )


def answer_and_score(
    env: gym.Env,
    answerer: Answerer,
    indices: Sequence[int],
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Episode], dict[str, float]]:
    """Answer samples ``indices`` of ``env`` in batches and score each answer with the env's own
    ``score`` (the task's reward, whatever wrappers ``env`` has). Returns the episodes, in ``indices``'
    order, and the seconds spent answering and scoring. ``progress(done, total)`` after each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    u = env.unwrapped
    episodes: list[Episode] = []
    seconds = {"answer": 0.0, "score": 0.0}
    for start in range(0, len(indices), batch_size):
        batch = list(indices[start : start + batch_size])
        observations = [env.reset(options={"index": i})[0] for i in batch]
        t0 = time.perf_counter()
        answers = list(answerer(env, batch, observations))
        t1 = time.perf_counter()
        if len(answers) != len(batch):
            raise ValueError(f"the answerer gave {len(answers)} answers for {len(batch)} observations")
        for i, observation, answer in zip(batch, observations, answers):
            scored = u.score(answer, index=i)
            sample = dataclasses.replace(scored.sample, image=None)
            episodes.append(
                Episode(i, _record(i, observation["prompt"], answer, scored), scored.info, sample)
            )
        seconds["score"] += time.perf_counter() - t1
        seconds["answer"] += t1 - t0
        if progress is not None:
            progress(len(episodes), len(indices))
    return episodes, seconds


def metrics_dataset(env: gym.Env):
    """The dataset whose own annotations the metrics may use (COCO's index): the env's, unless the env
    resizes its samples (``image_size``), which are then not the dataset's own."""
    u = env.unwrapped
    return None if u.image_size is not None else u.dataset


def summarise(
    env: gym.Env, episodes: Sequence[Episode], seconds: dict[str, float] | None = None
) -> EvaluationResult:
    """The task's metrics over ``episodes`` (from their full-precision records), and the report's notes."""
    u = env.unwrapped
    t0 = time.perf_counter()
    records, samples = [e.record for e in episodes], [e.sample for e in episodes]
    dataset = metrics_dataset(env)
    metrics = task_metrics(u.task, records, samples, dataset=dataset)
    notes = u.evaluation_notes(samples, dataset, metrics)
    seconds = {**(seconds or {}), "metrics": time.perf_counter() - t0}
    return EvaluationResult(u.task, records, samples, metrics, seconds, notes, [e.info for e in episodes])


def run_evaluation(
    env: gym.Env,
    answerer: Answerer,
    *,
    limit: int | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Answer samples ``0 .. min(limit, len(dataset)) - 1`` of ``env`` in batches, score, compute the metrics.

    ``progress(done, total)`` is called after each batch.
    """
    u = env.unwrapped
    n = len(u.dataset) if limit is None else min(int(limit), len(u.dataset))
    if n <= 0:
        raise ValueError("nothing to evaluate (limit <= 0 or empty dataset)")
    episodes, seconds = answer_and_score(env, answerer, range(n), batch_size=batch_size, progress=progress)
    return summarise(env, episodes, seconds)
