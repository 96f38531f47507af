"""Run inside a virtual environment with verl installed (tests/integrations/test_verl_install.py builds it): verl's
own config, reward loading, reward manager and dataset code, given the README's command-line keys.

    python verl_checks.py '<json: overrides, legacy_overrides, tokenizer, cases: [{parquet, answers}]>'

Prints one JSON object (per case: ``scores`` and ``image_sizes``):

* ``reward_function``: ``reward.custom_reward_function`` after Hydra composed verl's ``ppo_trainer`` config with
  the README's overrides (composition fails on a key verl's config does not have);
* ``legacy_loads``: whether the same keys without ``reward.`` (the old README) give verl a reward function;
* ``scores``: per answer, the reward verl's ``naive`` reward manager returned and the text it passed to the
  reward function, the answer tokenised and decoded as verl decodes responses;
* ``image_sizes``: (width, height) of each row's image after verl's dataset and qwen-vl-utils prepared it.
"""

from __future__ import annotations

import asyncio
import enum
import json
import sys
import types
from pathlib import Path


def torchvision_for_images_only() -> None:
    """qwen-vl-utils imports torchvision at the top, for videos only; PyPI has no CPU build of it for a CPU torch,
    so without a working one the image path (``fetch_image``: PIL and ``smart_resize``) runs beside a stand-in."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a CUDA build that cannot load its operators
        transforms = types.ModuleType("torchvision.transforms")
        transforms.InterpolationMode = enum.Enum("InterpolationMode", "BICUBIC BILINEAR NEAREST")
        stand_in = types.ModuleType("torchvision")
        stand_in.__version__, stand_in.io, stand_in.transforms = (
            "0.0",
            types.ModuleType("torchvision.io"),
            transforms,
        )
        sys.modules.update(
            {"torchvision": stand_in, "torchvision.io": stand_in.io, "torchvision.transforms": transforms}
        )


def composed(overrides: list[str]):
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def scores(config, tokenizer, rows, answers: list[list[str]]) -> list[dict]:
    """Each answer scored by verl's reward manager as in training: response ids, decoded by verl, rewarded."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(config, tokenizer)
    passed: list[str] = []
    compute_score = manager.compute_score

    def recorded(**kwargs):
        passed.append(kwargs["solution_str"])
        return compute_score(**kwargs)

    manager.compute_score = recorded
    out = []
    for row, row_answers in zip(rows, answers):
        for answer in row_answers:
            prompt = torch.tensor([tokenizer.encode("a prompt")])
            response = torch.tensor([tokenizer.encode(answer) + [tokenizer.eos_token_id]])
            length = prompt.shape[1] + response.shape[1]
            data = DataProto.from_dict(
                tensors={
                    "prompts": prompt,
                    "responses": response,
                    "attention_mask": torch.ones(1, length, dtype=torch.long),
                },
                non_tensors={
                    key: np.array([row[key]], dtype=object)
                    for key in ("data_source", "reward_model", "extra_info")
                },
            )
            result = manager.loop.run_until_complete(manager.run_single(data))
            out.append({"answer": answer, "reward": float(result["reward_score"]), "decoded": passed[-1]})
    return out


def image_sizes(config, tokenizer, parquet: str) -> list[list[int]]:
    """The images verl's rollout gets: RLHFDataset's messages through its process_multi_modal_info (qwen-vl-utils),
    as verl's agent loop calls it (patch size 14 from a Qwen-VL processor)."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    torchvision_for_images_only()

    # a processor only has to be there for the dataset to place images (it tokenises nothing here)
    dataset = RLHFDataset(data_files=parquet, tokenizer=tokenizer, config=config.data, processor=tokenizer)
    sizes = []
    for index in range(len(dataset)):
        messages = dataset[index]["raw_prompt"]
        info = RLHFDataset.process_multi_modal_info(messages, image_patch_size=14, config=config.data)
        images, _, _ = asyncio.run(info)
        sizes.append(list(images[0].size))
    return sizes


def main(spec: dict) -> dict:
    from datasets import load_dataset
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils import hf_tokenizer

    config = composed(spec["overrides"])
    tokenizer = hf_tokenizer(spec["tokenizer"])
    cases = []
    for case in spec["cases"]:
        rows = list(load_dataset("parquet", data_files=case["parquet"], split="train"))
        cases.append(
            {
                "scores": scores(config, tokenizer, rows, case["answers"]),
                "image_sizes": image_sizes(config, tokenizer, case["parquet"]),
            }
        )
    return {
        "reward_function": {k: config.reward.custom_reward_function[k] for k in ("path", "name")},
        "legacy_loads": get_custom_reward_fn(composed(spec["legacy_overrides"])) is not None,
        "cases": cases,
    }


if __name__ == "__main__":
    print("VERL-CHECKS " + json.dumps(main(json.loads(sys.argv[1]))))
