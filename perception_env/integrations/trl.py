"""TRL: a reward function for ``GRPOTrainer`` and the env's data as the ``datasets.Dataset`` it trains on.

    from trl import GRPOTrainer
    from perception_env.integrations import trl_dataset, trl_reward

    kwargs = {"difficulty": "easy", "answer_format": "number"}
    trainer = GRPOTrainer(model=..., reward_funcs=trl_reward("PerceptionR1/Counting-v0", **kwargs),
                          train_dataset=trl_dataset("PerceptionR1/Counting-v0", **kwargs), ...)

The dataset is TRL's vision-language layout: ``image`` (PIL), ``prompt`` (one user message: TRL puts the
image before its text), and the columns the reward finds the sample by, ``sample_index`` and ``sample_id``.
TRL passes every column to the reward function, which scores each completion with the env's own
``score``: the reward ``env.step`` gives the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from perception_env.core import PerceptionEnv


def _make(env_id: str, env_kwargs: dict[str, Any]) -> PerceptionEnv:
    import perception_env  # noqa: F401  (registers the envs)

    return gym.make(env_id, **env_kwargs).unwrapped


def trl_reward(env_id: str, **env_kwargs: Any) -> Callable[..., list[float]]:
    """A reward function with TRL's signature, ``(prompts, completions, **columns) -> list[float]``, scoring
    each completion (a string, or chat messages) against the sample its row names (``sample_index``, checked
    against ``sample_id``) of ``gym.make(env_id, **env_kwargs)``: build the dataset with the same arguments."""
    env = _make(env_id, env_kwargs)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        if "sample_index" not in columns:
            raise KeyError(
                f"the {env.task} reward needs the dataset's sample_index column (trl_dataset writes it); the "
                f"rows have {sorted(k for k in columns if not k.startswith(('trainer_', 'log_')))}"
            )
        indices, ids = columns["sample_index"], columns.get("sample_id") or [None] * len(completions)
        return [
            _score(env, completion, int(i), expected)
            for completion, i, expected in zip(completions, indices, ids)
        ]

    reward.__name__ = f"perception_{env.task}"  # TRL logs rewards/<name>/mean
    return reward


def _score(env: PerceptionEnv, completion: Any, index: int, expected_id: str | None) -> float:
    scored = env.score(completion_text(completion), index=index)
    if expected_id is not None and scored.sample.sample_id != expected_id:
        raise ValueError(
            f"row sample_index={index} names sample {expected_id!r}, but this env's sample {index} is "
            f"{scored.sample.sample_id!r}: build the reward and the dataset with the same env id and kwargs"
        )
    return scored.reward


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or chat messages (the last one's text content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):  # content blocks: [{"type": "text", "text": ...}, ...]
            return "".join(
                b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
            )
    raise TypeError(
        f"a completion is a string or a list of chat messages ending with one whose content is text, got {completion!r:.100}"
    )


def trl_dataset(env_id: str, limit: int | None = None, **env_kwargs: Any):
    """Samples ``0 .. limit-1`` (default: all) of ``gym.make(env_id, **env_kwargs)`` as a ``datasets.Dataset``
    in TRL's vision-language layout (the module docstring)."""
    from datasets import Dataset
    from PIL import Image

    env = _make(env_id, env_kwargs)
    rows = []
    for index in _indices(env, limit):
        observation, info = env.reset(options={"index": index})
        rows.append(
            {
                "image": Image.fromarray(observation["image"]),
                "prompt": [{"role": "user", "content": observation["prompt"]}],
                "sample_index": index,
                "sample_id": info["sample_id"],
            }
        )
    return Dataset.from_list(rows)


def _indices(env: PerceptionEnv, limit: int | None) -> range:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return range(len(env.dataset) if limit is None else min(limit, len(env.dataset)))
