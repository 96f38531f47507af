"""verl and EasyR1: the reward function their reward managers call, and an env's data as their parquet files.

    from perception_env.integrations.verl import export_parquet
    export_parquet("PerceptionR1/Counting-v0", "data/counting-train.parquet", difficulty="easy", answer_format="number")

then train with ``data.train_files=data/counting-train.parquet`` and
``reward.custom_reward_function.path=<this file> reward.custom_reward_function.name=compute_score`` (verl 0.9:
its top-level ``custom_reward_function.*`` is read only by the fully-async entry point; ``main_ppo`` ignores it),
or ``worker.reward.reward_function=<this file>:easyr1_compute_score`` with ``data.prompt_key=problem`` (EasyR1).

A row (verl's multimodal layout, as its geo3k example writes it): ``data_source`` (the env id), ``prompt``
(one user message, ``<image>`` where the image goes), ``images`` (one image), ``ability`` (the task),
``reward_model`` = ``{"style": "rule", "ground_truth": ...}``, ``extra_info`` = ``{"split", "index",
"sample_id"}``; and for EasyR1 ``problem`` (the prompt as text) and ``answer`` (the ground truth). The ground
truth is a JSON string holding the sample's targets and the env's scoring options
(:mod:`perception_env.integrations.ground_truth`), so the reward needs neither the env nor its data.

The image frame: each image is ``{"bytes": PNG, "min_pixels", "max_pixels"}`` with the env's bounds. verl hands
the entry to qwen-vl-utils' ``fetch_image``, which resizes by those keys (its defaults, 3136..12,845,056 pixels,
would show a large image in another frame than the one Qwen2.5-VL answers are scored in); the processor then
keeps that size. EasyR1 resizes by its ``data.min_pixels`` / ``data.max_pixels``: set them to the same bounds.

Decoding: verl's reward managers (naive, dapo, ...) and EasyR1 decode responses with
``skip_special_tokens=True``, and neither has a setting to keep special tokens: an answer in Qwen2-VL's
box-token formats arrives without its tokens and scores less than ``env.step`` gives what the model wrote (no
format credit; counting 0; README "Answers"). Train those tasks with the Qwen2.5-VL JSON format
(``answer_format="qwen2.5-vl"``), or counting with ``"number"``; :func:`export_parquet` warns otherwise.
"""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

from perception_env.core import PerceptionEnv
from perception_env.integrations.common import (
    make_env,
    sample_indices,
    special_token_format,
    stripped_tokens_note,
)
from perception_env.integrations.ground_truth import ground_truth, score_ground_truth

IMAGE_PLACEHOLDER = "<image>"  # verl and EasyR1 put the image where the prompt text has this


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> float:
    """verl's custom reward function: the env's reward of ``solution_str`` against ``ground_truth`` (a row's
    ``reward_model.ground_truth``); ``data_source`` and ``extra_info`` are not needed.

    ``solution_str`` is what verl's reward manager decoded with ``skip_special_tokens=True``: the env's reward of
    that text, which for Qwen2-VL's box-token formats is less than the reward of what the model wrote (the
    module docstring)."""
    return score_ground_truth(solution_str, ground_truth).reward


def easyr1_compute_score(reward_input: dict[str, Any]) -> dict[str, float]:
    """EasyR1's sequential reward function: ``{"response", "response_length", "ground_truth"}`` ->
    ``{"overall": reward, "format": 1.0 if the answer parsed, "accuracy": 1.0 if the task counts it right}``."""
    scored = score_ground_truth(reward_input["response"], reward_input["ground_truth"])
    return {
        "overall": scored.reward,
        "format": float(scored.info["parsed"]["well_formed"]),
        "accuracy": float(scored.info["is_success"]),
    }


def easyr1_compute_score_batch(reward_inputs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """EasyR1's batch reward function (``reward_type: batch``): :func:`easyr1_compute_score` of each input."""
    return [easyr1_compute_score(reward_input) for reward_input in reward_inputs]


def rows(env_id: str, limit: int | None = None, **env_kwargs: Any) -> list[dict[str, Any]]:
    """Samples ``0 .. limit-1`` (default: all) of ``gym.make(env_id, **env_kwargs)`` as rows of the layout
    above (each image as ``{"bytes": PNG, "min_pixels", "max_pixels"}``)."""
    return _rows(make_env(env_id, env_kwargs), env_id, env_kwargs.get("split", "train"), limit)


def _rows(env: PerceptionEnv, env_id: str, split: str, limit: int | None) -> list[dict[str, Any]]:
    from PIL import Image

    out = []
    for index in sample_indices(env, limit):
        observation, info = env.reset(options={"index": index})
        truth = ground_truth(env, env.sample)
        problem = IMAGE_PLACEHOLDER + observation["prompt"]
        out.append(
            {
                "data_source": env_id,
                "prompt": [{"role": "user", "content": problem}],
                "images": [_image_entry(Image.fromarray(observation["image"]), env)],
                "ability": env.task,
                "reward_model": {"style": "rule", "ground_truth": truth},
                "extra_info": {
                    "split": split,
                    "index": index,
                    "sample_id": info["sample_id"],
                },
                "problem": problem,
                "answer": truth,
            }
        )
    return out


def _image_entry(image, env: PerceptionEnv) -> dict[str, Any]:
    """An image as verl and EasyR1 read it (``bytes``), with the env's frame as qwen-vl-utils reads it."""
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "min_pixels": env.min_pixels, "max_pixels": env.max_pixels}


def export_parquet(env_id: str, path: str | Path, limit: int | None = None, **env_kwargs: Any) -> Path:
    """Write :func:`rows` to the parquet file ``path``; returns the path. Warns when the env's answer format
    relies on special tokens, which verl's and EasyR1's decoding drops (the module docstring)."""
    from datasets import Dataset

    env = make_env(env_id, env_kwargs)
    if special_token_format(env):
        warnings.warn(
            f"export_parquet({env_id!r}): verl's and EasyR1's reward managers decode with "
            f"skip_special_tokens=True, so {stripped_tokens_note(env)}. Export with "
            "answer_format='qwen2.5-vl' (or 'number' for counting) to train there",
            UserWarning,
            stacklevel=2,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(_rows(env, env_id, env_kwargs.get("split", "train"), limit)).to_parquet(str(path))
    return path
