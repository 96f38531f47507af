"""Counting: find (and so count) every object of one class."""

from __future__ import annotations

from typing import Any

import numpy as np

from perception_env.core import PerceptionEnv
from perception_env.data import PixmoCount, ShapesCounting, jsonl_source
from perception_env.data.loaders.jsonl import COUNTING
from perception_env.data.sample import Sample
from perception_env.rewards import CountingRewardConfig, RewardResult, score_counting
from perception_env.rewards.counting import target_points


class CountingEnv(PerceptionEnv):
    """Count the objects of one class by pointing at (or boxing) each of them.

    ## Description
    One-step episode, as PixMo-Count in Perception-R1: the agent lists every
    object of the asked class; its count is the number of objects listed.

    ## Action Space
    ``UnicodeText``. Formats (keyword ``answer_format``):

    * ``"qwen2-vl"`` (default, as the paper): one object ref then boxes,
      ``<|object_ref_start|>circle<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>...``,
      in ``[0, 1000)`` relative; each box's centre is its point.
    * ``"qwen2-vl-points"``: ``(x,y),(x,y),...`` in ``[0, 1000)`` relative.
    * ``"qwen2.5-vl"``: ``[{"point_2d": [x, y], "label": ...}, ...]`` (or ``bbox_2d``)
      in absolute pixels of the processor-resized image.
    * ``"number"``: just the count, e.g. ``3``.

    A ``"qwen2-vl"`` answer decoded with ``skip_special_tokens=True`` (``circle(85,156),(241,312)``,
    its tokens gone) is read but not well-formed, so it scores 0; ``info["reason"]`` says why.
    The answer may end as a chat model ends it: trailing ``<|im_end|>`` / ``<|endoftext|>``
    tokens (repeated, white space among them) are removed before parsing; text after a stop
    token counts as extra text and the answer is not well-formed.

    ## Observation Space
    ``Dict(image, prompt)`` as every perception env; default prompt
    ``Output all the bounding boxes of the {object}`` (paper).

    ## Rewards
    Point/box answers, in ``[0, 1]``: ``min(Np, Ng) / max(Np, Ng) * (1 - mean
    matched distance / sqrt(2))`` with distances in image-normalised
    coordinates and Hungarian matching (the paper's formula, which measures in
    ``[0, 1000)`` units over ``1000*sqrt(2)``); 0 for a malformed answer.
    ``"number"`` answers: 1 for the exact count, else 0; with
    ``reward_config={"kind": "ratio"}``, ``min(p, g) / max(p, g)`` (partial credit).
    ``reward_config={"matching": "listed"}`` (an ablation): point ``i`` against target ``i`` as listed.

    ## Starting State
    A sample drawn with ``self.np_random``; ``reset(options={"index": i})`` replays sample ``i``.

    ## Episode End
    After one step (``terminated=True``).

    ## Arguments
    ``source`` ("synthetic", "pixmo-count", "jsonl", "hf"), ``difficulty``, ``split``,
    ``data_kwargs``, ``answer_format``, ``prompt_template`` (``{object}``),
    ``reward_config`` (``CountingRewardConfig`` or dict), ``image_size``, ``min_pixels``/``max_pixels``, ``render_mode="rgb_array"``,
    ``reasoning`` (``"none"``, or ``"think"``: R1's think-then-answer, :mod:`perception_env.reasoning`), ``think_format_weight``.

    ## Version History
    * v0: initial version.

    ```python
    import gymnasium as gym, perception_env
    env = gym.make("PerceptionR1/Counting-v0", answer_format="number", difficulty="easy")
    obs, info = env.reset(seed=0)
    print(obs["prompt"])   # How many circles are in the image? Answer with a number.
    ```
    """

    task = "counting"
    env_id = "PerceptionR1/Counting-v0"
    default_format = "qwen2-vl"
    formats = ("qwen2-vl", "qwen2-vl-points", "qwen2.5-vl", "number")
    default_prompts = {
        "qwen2-vl": "Output all the bounding boxes of the {object}",
        "qwen2-vl-points": "Point to all the {object} in the image.",
        "qwen2.5-vl": "Point to all the {object} in the image and output the coordinates in JSON format.",
        "number": "How many {object} are in the image? Answer with a number.",
    }
    answer_descriptions = {  # "number" is R1-V's own wording (a counting recipe)
        "qwen2-vl": "bounding boxes",
        "qwen2-vl-points": "points",
        "qwen2.5-vl": "points in JSON format",
        "number": "number",
    }
    scorer = staticmethod(score_counting)
    reward_config_class = CountingRewardConfig
    synthetic_data = ShapesCounting
    real_sources = {"pixmo-count": jsonl_source(PixmoCount)}
    jsonl_schema = COUNTING
    report_columns = (("accuracy", "accuracy", "pct"), ("mae", "MAE", "num"))
    render_points = True

    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        return {"object": plural(sample.query)}

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        points = np.asarray(sample.points, dtype=np.float64).reshape(-1, 2)
        label = sample.query
        if self.answer_format.name == "number":
            return {"count": len(points)}
        if self.answer_format.name == "qwen2-vl" and len(sample.boxes) == len(points) and len(points):
            # Boxes of the counted objects, when known (synthetic data); else a
            # small box around each point, whose centre is the point.
            return {"boxes": sample.boxes, "labels": [label] * len(points)}
        if self.answer_format.name == "qwen2-vl":
            half = 0.01 * np.array([sample.width, sample.height])
            boxes = np.concatenate([points - half, points + half], axis=1)
            return {"boxes": boxes, "labels": [label] * len(points)}
        return {"points": points, "labels": [label] * len(points)}

    def _is_success(self, result: RewardResult, sample: Sample) -> bool:
        """The exact count (PixMo-Count accuracy)."""
        return result.components.get("exact", 0.0) == 1.0

    @classmethod
    def metrics(cls, records, samples, *, dataset=None, categories=None) -> dict[str, float]:
        """Exact-count accuracy and MAE: the number written (``number`` format), else the objects listed."""
        from perception_env.evaluation.metrics import counting_metrics, parsed_of

        predicted = []
        for record in records:
            p = parsed_of(record)
            if record.get("answer_format") == "number" or (
                p.get("count") is not None and not p.get("points")
            ):
                predicted.append(p.get("count"))
            else:
                predicted.append(len(p.get("points") or []))
        truth = [s.count if s.count is not None else len(target_points(s)) for s in samples]
        return counting_metrics(predicted, truth)


def plural(noun: str) -> str:
    """English plural of a class name for prompts ('circle' -> 'circles'); leaves plurals alone."""
    noun = noun.strip()
    if not noun or noun.endswith("s") or noun.endswith("people"):
        return noun
    if noun.endswith(("x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"
