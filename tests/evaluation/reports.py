"""Evaluations with known mistakes, for the tests of report.html and the COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym

import perception_env  # noqa: F401  (registers the envs)
from perception_env.evaluation import run_evaluation, write_outputs

CLASSES = ("circle", "square", "triangle", "cross", "star")


def flawed_detector(env: gym.Env, indices, observations) -> list[str]:
    """The oracle's objects (Qwen2.5-VL JSON) with one mistake chosen by the sample index: index % 4 ==
    0 drops the last object, 1 moves the first box by its own width (IoU 0: a miss and an extra box),
    2 gives the first object another class, 3 is perfect."""
    answers = []
    for i in indices:
        env.reset(options={"index": i})
        objects = json.loads(env.unwrapped.oracle_answer(exact=True))
        if objects and i % 4 == 0:
            objects = objects[:-1]
        elif objects and i % 4 == 1:
            x1, y1, x2, y2 = objects[0]["bbox_2d"]
            objects[0]["bbox_2d"] = [x1 + (x2 - x1), y1, x2 + (x2 - x1), y2]
        elif objects and i % 4 == 2:
            objects[0]["label"] = next(c for c in CLASSES if c != objects[0]["label"])
        answers.append(json.dumps(objects))
    return answers


def detection_run(out: Path, n: int = 24, answerer=flawed_detector, **env_kwargs) -> tuple[dict, list[dict]]:
    """Evaluate ``answerer`` on ``n`` synthetic detection samples and write every output into ``out``
    (as ``perception-r1 eval`` does); returns the run and its records."""
    kwargs = {"split": "test", "difficulty": "easy", **env_kwargs}
    env = gym.make("PerceptionR1/Detection-v0", **kwargs)
    result = run_evaluation(env, answerer, limit=n)
    run = {
        "task": result.task,
        "benchmark": f"shapes {kwargs['difficulty']} {kwargs['split']}",
        "agent": getattr(answerer, "__name__", "agent"),
        "metrics": result.metrics,
        "env_id": "PerceptionR1/Detection-v0",
        "env_kwargs": kwargs,
        "notes": result.notes,
    }
    write_outputs(out, run, result.records, env=env)
    env.close()
    return run, result.records
