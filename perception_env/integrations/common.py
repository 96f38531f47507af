"""What the TRL and verl helpers share: which samples, which image frame, and what a trainer's decoding loses.

Trainers decode answers with ``skip_special_tokens=True`` (TRL's ``GRPOTrainer``, verl's reward managers):
Qwen2-VL's ref and box tokens (``<|object_ref_start|>``, ``<|box_start|>`` ...) are special tokens, so an answer
in the ``qwen2-vl`` or ``qwen2-vl-points`` format arrives without them and scores less than ``env.step`` gives
the text the model wrote (no format credit; counting 0). :func:`special_token_format` says whether an env's
format is one of those.

The image frame: Qwen2.5-VL answers in pixels of the image as its processor resized it, so the trainer's
processor must resize as the env does (``min_pixels`` / ``max_pixels``, README "Coordinate frames").
:func:`processor_bounds` reads a processor's, :func:`check_processor_frame` warns when they differ.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from perception_env.core import PerceptionEnv
from perception_env.formats.qwen2 import REF_START, has_qwen2_tokens

# any one object, written in a format to see whether the format spells it with special tokens
_ONE_BOX = {"boxes": np.array([[0.0, 0.0, 1.0, 1.0]]), "labels": ["x"], "count": 1, "text": "x"}


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> PerceptionEnv:
    """``gym.make(env_id, **env_kwargs)``'s env, without wrappers (the helpers call ``score`` and ``reset``)."""
    import perception_env  # noqa: F401  (registers the envs)

    return gym.make(env_id, **env_kwargs).unwrapped


def sample_indices(env: PerceptionEnv, limit: int | None) -> range:
    """Samples ``0 .. limit-1`` of ``env`` (default: all); ``ValueError`` unless ``limit`` is a positive int."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return range(len(env.dataset) if limit is None else min(limit, len(env.dataset)))


def special_token_format(env: PerceptionEnv) -> bool:
    """Whether a well-formed answer in ``env``'s format holds Qwen2-VL special tokens (``qwen2-vl``,
    ``qwen2-vl-points``): then decoding with ``skip_special_tokens=True`` changes its reward."""
    return has_qwen2_tokens(env.answer_format.write(**_ONE_BOX))


def stripped_tokens_note(env: PerceptionEnv) -> str:
    """What ``skip_special_tokens=True`` costs ``env``'s answers, for a warning or an error."""
    name = env.answer_format.name
    if special_token_format(env):
        return (
            f"its {name!r} answers lose Qwen2-VL's ref/box tokens ({REF_START}, <|box_start|> ...) and score "
            f"less than env.step gives the text the model wrote (no format credit; counting scores 0)"
        )
    return (
        f"its {name!r} format needs no special tokens, but an answer holding Qwen2-VL's ref/box tokens is "
        "scored as if it did not hold them"
    )


def processor_bounds(processor: Any) -> tuple[int, int] | None:
    """``(min_pixels, max_pixels)`` of a Qwen-VL processor's (or image processor's) resize; None if it has
    none (a tokenizer)."""
    image_processor = getattr(processor, "image_processor", processor)
    size = getattr(image_processor, "size", None)  # a dict, or transformers 5's SizeDict
    for low_key, high_key, where in (
        ("shortest_edge", "longest_edge", size),  # transformers >= 4.50 (shortest_edge: an area here)
        ("min_pixels", "max_pixels", image_processor),  # older releases
    ):
        low, high = _field(where, low_key), _field(where, high_key)
        if low is not None and high is not None:
            return int(low), int(high)
    return None


def _field(holder: Any, key: str) -> Any:
    try:
        return holder[key]
    except (KeyError, TypeError, IndexError):
        return getattr(holder, key, None)


def check_processor_frame(processor: Any, env: PerceptionEnv, where: str) -> bool:
    """Warn (and return False) when ``processor`` resizes images to other bounds than ``env``: the model then
    answers in a frame the reward does not score in. ``where``: who meets the env, for the message."""
    bounds = processor_bounds(processor)
    if bounds is None or bounds == (env.min_pixels, env.max_pixels):
        return True
    warnings.warn(
        f"{where}: the processor resizes images to {bounds[0]}..{bounds[1]} pixels but the env to "
        f"{env.min_pixels}..{env.max_pixels}: images outside the range both share are shown to the model "
        "in another frame than the one its answers are scored in. Load the processor with the env's bounds "
        "(agents.policies.processor.load_processor does by default) or make the env with the processor's",
        UserWarning,
        stacklevel=3,
    )
    return False
