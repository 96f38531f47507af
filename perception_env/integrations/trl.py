"""TRL: a reward function for ``GRPOTrainer`` and the env's data as the ``datasets.Dataset`` it trains on.

    from trl import GRPOTrainer
    from perception_env.integrations import trl_dataset, trl_reward

    kwargs = {"difficulty": "easy", "answer_format": "number"}
    processor = load_processor(model)  # agents.policies.processor: the env's image bounds by default
    trainer = GRPOTrainer(model=..., processing_class=processor,
                          reward_funcs=trl_reward("PerceptionR1/Counting-v0", processing_class=processor, **kwargs),
                          train_dataset=trl_dataset("PerceptionR1/Counting-v0", **kwargs), ...)

The dataset is TRL's vision-language layout: ``image`` (PIL), ``prompt`` (one user message: TRL puts the
image before its text), the columns the reward finds the sample by, ``sample_index`` and ``sample_id``, and the
image bounds of the env's frame, ``min_pixels`` and ``max_pixels`` (the processor must resize the same way).
TRL passes every column to the reward function, which scores each completion with the env's own ``score``:
the reward ``env.step`` gives the same text.

Which text: TRL decodes completions with ``skip_special_tokens=True``, which drops Qwen2-VL's ref and box tokens
(:mod:`perception_env.integrations.common`). Given the trainer's ``processing_class``, the reward decodes
TRL's ``completion_ids`` itself, keeping them: the text the model wrote.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from perception_env.core import PerceptionEnv
from perception_env.integrations.common import (
    check_processor_frame,
    make_env,
    sample_indices,
    stripped_tokens_note,
)


def trl_reward(
    env_id: str, *, processing_class: Any = None, limit: int | None = None, **env_kwargs: Any
) -> Callable[..., list[float]]:
    """A reward function with TRL's signature, ``(prompts, completions, completion_ids=None, **columns) ->
    list[float]``, scoring each completion against the sample its row names (``sample_index``, checked against
    ``sample_id`` and the image bounds) of ``gym.make(env_id, **env_kwargs)``: build the dataset with the same
    arguments (``limit`` too: a row past it is refused).

    ``processing_class``: the trainer's (a processor or a tokenizer). With it each completion is
    ``completion_ids`` decoded keeping special tokens; without it, or when TRL passes no ids, the text TRL
    decoded (a string or chat messages), with a warning, once, of what that loses. A processor that resizes
    images to other bounds than the env is warned about too."""
    env = make_env(env_id, env_kwargs)
    indices = sample_indices(env, limit)
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if processing_class is not None:
        check_processor_frame(processing_class, env, f"trl_reward({env_id!r})")
    warned = False

    def texts(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None) -> list[str]:
        nonlocal warned
        if tokenizer is not None and completion_ids is not None:
            # the trailing stop token TRL keeps (<|im_end|>) is removed by every answer format's parser
            return [
                tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
                for ids in completion_ids
            ]
        if not warned:
            warned = True
            missing = "processing_class" if tokenizer is None else "completion_ids"
            warnings.warn(
                f"trl_reward({env_id!r}) scores the text TRL decoded with skip_special_tokens=True (no "
                f"{missing}): {stripped_tokens_note(env)}. Pass processing_class=<the trainer's processing "
                "class> so the reward decodes completion_ids keeping them",
                UserWarning,
                stacklevel=3,
            )
        return [completion_text(c) for c in completions]

    def reward(
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **columns: Any,
    ) -> list[float]:
        if "sample_index" not in columns:
            raise KeyError(
                f"the {env.task} reward needs the dataset's sample_index column (trl_dataset writes it); the "
                f"rows have {sorted(k for k in columns if not k.startswith(('trainer_', 'log_')))}"
            )
        _check_rows(env, indices, columns)
        ids = columns.get("sample_id") or [None] * len(completions)
        return [
            _score(env, text, int(i), expected)
            for text, i, expected in zip(texts(completions, completion_ids), columns["sample_index"], ids)
        ]

    reward.__name__ = f"perception_{env.task}"  # TRL logs rewards/<name>/mean
    return reward


def _check_rows(env: PerceptionEnv, indices: range, columns: dict[str, Any]) -> None:
    """Rows of another dataset than the reward's: past its ``limit``, or of another image frame."""
    outside = [int(i) for i in columns["sample_index"] if int(i) not in indices]
    if outside:
        raise ValueError(
            f"rows name samples {outside[:5]} but this reward scores samples 0..{len(indices) - 1} (its limit): "
            "build the reward and the dataset with the same limit"
        )
    for name, expected in (("min_pixels", env.min_pixels), ("max_pixels", env.max_pixels)):
        other = {int(v) for v in columns.get(name) or ()} - {expected}
        if other:
            raise ValueError(
                f"rows were made with {name}={sorted(other)[0]} but this reward's env has {name}={expected}: "
                "build the reward and the dataset with the same env kwargs"
            )


def _score(env: PerceptionEnv, text: str, index: int, expected_id: str | None) -> float:
    scored = env.score(text, index=index)
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
    in TRL's vision-language layout (the module docstring), with the image bounds it was made with."""
    from datasets import Dataset
    from PIL import Image

    env = make_env(env_id, env_kwargs)
    rows = []
    for index in sample_indices(env, limit):
        observation, info = env.reset(options={"index": index})
        rows.append(
            {
                "image": Image.fromarray(observation["image"]),
                "prompt": [{"role": "user", "content": observation["prompt"]}],
                "sample_index": index,
                "sample_id": info["sample_id"],
                "min_pixels": env.min_pixels,
                "max_pixels": env.max_pixels,
            }
        )
    return Dataset.from_list(rows)
