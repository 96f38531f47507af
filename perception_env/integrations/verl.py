"""verl and EasyR1: the reward function their reward managers call, and an env's data as their parquet files.

    from perception_env.integrations.verl import export_parquet
    export_parquet("PerceptionR1/Counting-v0", "data/counting-train.parquet", difficulty="easy", answer_format="number")

then train with ``data.train_files=data/counting-train.parquet`` and
``custom_reward_function.path=<this file> custom_reward_function.name=compute_score`` (verl), or
``worker.reward.reward_function=<this file>:easyr1_compute_score`` with ``data.prompt_key=problem`` (EasyR1).

A row (verl's multimodal layout, as its geo3k example writes it): ``data_source`` (the env id), ``prompt``
(one user message, ``<image>`` where the image goes), ``images`` (one image), ``ability`` (the task),
``reward_model`` = ``{"style": "rule", "ground_truth": ...}``, ``extra_info`` = ``{"split", "index",
"sample_id"}``; and for EasyR1 ``problem`` (the prompt as text) and ``answer`` (the ground truth). The ground
truth is a JSON string holding the sample's targets and the env's scoring options
(:mod:`perception_env.integrations.ground_truth`), so the reward needs neither the env nor its data.

verl decodes responses with ``skip_special_tokens=True``: a Qwen2-VL box-token answer arrives without its tokens
and is scored as README "Answers" says (no format credit; counting 0). Train those tasks with the Qwen2.5-VL
JSON formats (``answer_format="qwen2.5-vl"``) or counting with ``"number"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from perception_env.integrations.ground_truth import ground_truth, score_ground_truth

IMAGE_PLACEHOLDER = "<image>"  # verl and EasyR1 put the image where the prompt text has this


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> float:
    """verl's custom reward function: the env's reward of ``solution_str`` against ``ground_truth`` (a row's
    ``reward_model.ground_truth``); ``data_source`` and ``extra_info`` are not needed."""
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
    above (images as PIL images)."""
    from PIL import Image

    import perception_env  # noqa: F401  (registers the envs)
    from perception_env.integrations.trl import _indices

    env = gym.make(env_id, **env_kwargs).unwrapped
    out = []
    for index in _indices(env, limit):
        observation, info = env.reset(options={"index": index})
        truth = ground_truth(env, env.sample)
        problem = IMAGE_PLACEHOLDER + observation["prompt"]
        out.append(
            {
                "data_source": env_id,
                "prompt": [{"role": "user", "content": problem}],
                "images": [Image.fromarray(observation["image"])],
                "ability": env.task,
                "reward_model": {"style": "rule", "ground_truth": truth},
                "extra_info": {
                    "split": env_kwargs.get("split", "train"),
                    "index": index,
                    "sample_id": info["sample_id"],
                },
                "problem": problem,
                "answer": truth,
            }
        )
    return out


def export_parquet(env_id: str, path: str | Path, limit: int | None = None, **env_kwargs: Any) -> Path:
    """Write :func:`rows` to the parquet file ``path`` (with Hugging Face's image features: verl and EasyR1
    read the images back as PIL images); returns the path."""
    from datasets import Dataset

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows(env_id, limit, **env_kwargs)).to_parquet(str(path))
    return path
