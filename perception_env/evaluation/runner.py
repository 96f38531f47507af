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
from perception_env.data.sample import Sample
from perception_env.evaluation.metrics import chinese_tokenizer, contains_chinese
from perception_env.evaluation.tasks import official_coco, task_metrics
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


def _record(env: gym.Env, index: int, observation: dict, answer: str, reward: float, info: dict) -> dict:
    """One predictions.jsonl line: ids, prompt, answer, reward, success, parse in ORIGINAL pixels."""
    u = env.unwrapped
    parsed = u.answer_format.parse(answer, u.frame)  # full precision (info["parsed"] is rounded to 0.01 px)
    s = u.sample
    return jsonable(
        {
            "index": index,
            "sample_id": s.sample_id,
            "image_id": s.meta.get("image_id") if isinstance(s.meta, dict) else None,
            "image_size": [s.width, s.height],
            "prompt": observation["prompt"],
            "answer": answer,
            "answer_format": u.answer_format.name,
            "reward": reward,
            "is_success": bool(info.get("is_success", False)),
            "parsed": {
                "well_formed": parsed.well_formed,
                "boxes": parsed.boxes.tolist(),
                "labels": list(parsed.labels),
                "points": parsed.points.tolist(),
                "count": parsed.count,
                "text": parsed.text,
                "problems": list(parsed.problems),
            },
            "target": info.get("target"),
            "reward_components": info.get("reward_components"),
            "reason": info.get("reason"),
        }
    )


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
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    records: list[dict] = []
    samples: list[Sample] = []
    t_answer = t_score = 0.0
    for start in range(0, n, batch_size):
        indices = list(range(start, min(n, start + batch_size)))
        observations = [env.reset(options={"index": i})[0] for i in indices]
        t0 = time.perf_counter()
        answers = list(answerer(env, indices, observations))
        t1 = time.perf_counter()
        if len(answers) != len(indices):
            raise ValueError(f"the answerer gave {len(answers)} answers for {len(indices)} observations")
        for i, observation, answer in zip(indices, observations, answers):
            env.reset(options={"index": i})
            _, reward, _, _, info = env.step(answer)
            records.append(_record(env, i, observation, answer, float(reward), info))
            samples.append(dataclasses.replace(u.sample, image=None))
        t_score += time.perf_counter() - t1
        t_answer += t1 - t0
        if progress is not None:
            progress(len(records), n)
    t0 = time.perf_counter()
    dataset = None if u.image_size is not None else u.dataset
    metrics = task_metrics(u.task, records, samples, dataset=dataset)
    notes = []
    if u.task == "detection":
        if official_coco(dataset, samples) is not None:
            notes.append(
                "detection ground truth: the dataset's own COCO annotations (official areas, iscrowd)"
            )
        else:
            notes.append("detection ground truth: built from the samples (area = box area, iscrowd honoured)")
        notes.append(
            "every predicted box scored 1.0 (as the paper); unlabelled or unknown-label boxes dropped"
        )
    if u.task == "ocr" and any(contains_chinese(s.text) for s in samples) and chinese_tokenizer() != "jieba":
        notes.append(
            "Chinese text tokenised per character for word metrics (jieba not installed; the paper's "
            "Fox/GOT evaluation uses jieba: pip install 'perception-r1[zh]')"
        )
    if u.task == "ocr" and "meteor" not in metrics:
        notes.append(
            "METEOR: NLTK's WordNet corpus is not installed, so meteor_exact_stem = METEOR with exact and "
            "Porter-stem matches only (no synonyms); not comparable to the paper's METEOR"
        )
    seconds = {"answer": t_answer, "score": t_score, "metrics": time.perf_counter() - t0}
    return EvaluationResult(u.task, records, samples, metrics, seconds, notes)
