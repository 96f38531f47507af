"""The prompt tokens the project builds equal the released chat template rendered by transformers alone.

For every env id, every answer format it accepts and both released models: ``QwenVLPolicy.encode_prompts``
(with ``load_processor(<released folder>)``) against ``tokenizer.apply_chat_template`` with the template read
from chat_template.json, ``<|image_pad|>`` repeated as many times as the released image processor's grid
says, tokenised by the released tokenizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.real_files.support import (
    IMAGE_PAD_ID,
    MAX_PIXELS,
    MIN_PIXELS,
    MODELS,
    PAD_ID,
    QWEN25_VL,
    env_format_cases,
    make_env,
    real_dir,
    require_real_files,
    vision_template,
)

require_real_files()

from perception_env.frames import smart_resize  # noqa: E402

CASES = env_format_cases()
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def reference(name, tokenizers, image_processors, observation):
    """(input ids, image_grid_thw, pixel_values) as transformers renders the released files, no project code."""
    tokenizer, image_processor = tokenizers[name], image_processors[name]
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": observation["prompt"]}]}
    ]
    text = tokenizer.apply_chat_template(
        messages, chat_template=vision_template(name), tokenize=False, add_generation_prompt=True
    )
    vision = image_processor(images=[Image.fromarray(observation["image"])], return_tensors="pt")
    grid = vision["image_grid_thw"]
    count = int(grid[0].prod()) // image_processor.merge_size**2
    assert text.count("<|image_pad|>") == 1
    text = text.replace("<|image_pad|>", "<|image_pad|>" * count)
    return tokenizer(text)["input_ids"], grid, vision["pixel_values"]


def observation_for(env_id, fmt, index=0, **kwargs):
    env = make_env(env_id, fmt, **kwargs)
    observation, info = env.reset(options={"index": index})
    return env, observation, info


def test_cases_cover_every_env_and_format():
    """The parametrisation below is every (env, format) pair: 9 of them, 4 envs."""
    assert len(CASES) == 9 and len({env_id for env_id, _ in CASES}) == 4
    assert ("PerceptionR1/Counting-v0", "qwen2-vl-points") in CASES and (
        "PerceptionR1/OCR-v0",
        "text",
    ) in CASES


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("env_id,fmt", CASES)
def test_prompt_ids_equal_released_template(
    name, env_id, fmt, prompt_policies, real_tokenizers, real_image_processors
):
    """Same ids, image-token positions, grid and pixel values as the released files give."""
    _, observation, _ = observation_for(env_id, fmt)
    ids, grid, pixels = reference(name, real_tokenizers, real_image_processors, observation)
    got = prompt_policies[name].encode_prompts([observation])
    assert got["input_ids"][0].tolist() == ids
    assert got["attention_mask"][0].tolist() == [1] * len(ids)
    assert got["mm_token_type_ids"][0].tolist() == [int(i == IMAGE_PAD_ID) for i in ids]
    assert torch.equal(got["image_grid_thw"], grid)
    torch.testing.assert_close(got["pixel_values"], pixels.to(got["pixel_values"].dtype))
    # the image-token count is the one perception_env's frame assumes: one token per 28x28 resized pixels
    h, w = observation["image"].shape[:2]
    rh, rw = smart_resize(h, w, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    assert ids.count(IMAGE_PAD_ID) == rh * rw // 28**2


@pytest.mark.parametrize("name", MODELS)
def test_batched_prompts_are_left_padded_references(
    name, prompt_policies, real_tokenizers, real_image_processors
):
    """All nine observations in one batch: each row is its reference ids, left-padded with <|endoftext|>."""
    observations = [observation_for(env_id, fmt)[1] for env_id, fmt in CASES]
    got = prompt_policies[name].encode_prompts(observations)
    width = got["input_ids"].shape[1]
    lengths = set()
    for row, observation in enumerate(observations):
        ids, _, _ = reference(name, real_tokenizers, real_image_processors, observation)
        pad = width - len(ids)
        lengths.add(len(ids))
        assert got["input_ids"][row].tolist() == [PAD_ID] * pad + ids
        assert got["attention_mask"][row].tolist() == [0] * pad + [1] * len(ids)
    assert len(lengths) > 1 and width == max(lengths)  # padding was really exercised


@pytest.mark.parametrize("name", MODELS)
def test_chat_text_is_the_vision_template(name, prompt_policies):
    """The exact released vision prompt; never Qwen2.5's text-only template with tools."""
    text = prompt_policies[name].chat_text("OCR this image:")
    assert text == (
        SYSTEM + "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>OCR this image:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "<tools>" not in text and "# Tools" not in text


def test_released_qwen25_tokenizer_template_is_text_only(real_tokenizers):
    """The premise: Qwen2.5-VL's tokenizer_config.json template is text-only (with tools); it writes no
    image placeholder, so a processor that fell back to it would drop the image."""
    tokenizer = real_tokenizers[QWEN25_VL]
    assert "<tools>" in tokenizer.chat_template and "<|image_pad|>" not in tokenizer.chat_template
    assert "<|vision_start|><|image_pad|><|vision_end|>" in vision_template(QWEN25_VL)


@pytest.mark.parametrize(
    "env_id", ["PerceptionR1/Detection-v0", "PerceptionR1/Counting-v0", "PerceptionR1/Grounding-v0"]
)
@pytest.mark.parametrize("size", [(150, 99), (61, 200), (61, 40), (1200, 900)])
def test_qwen25_json_frame_is_the_released_processor_resize(
    env_id, size, prompt_policies, real_image_processors
):
    """Qwen2.5-VL answers in pixels of the image as the processor resized it: the env's frame extent is the
    released image processor's grid times 14 px, for sizes that are not multiples of 28 and for images
    below min_pixels (61x40 -> 84x56) and above max_pixels (1200x900 -> 1148x840, not the released
    12.8M-pixel bound's 1204x896)."""
    env, observation, info = observation_for(env_id, "qwen2.5-vl", image_size=size)
    assert observation["image"].shape[:2] == (size[1], size[0])
    grid = real_image_processors[QWEN25_VL](images=[Image.fromarray(observation["image"])])["image_grid_thw"]
    _, h, w = np.asarray(grid)[0].tolist()
    assert info["frame"]["name"] == "resized-pixels"
    assert info["frame"]["answer_extent"] == [w * 14, h * 14]
    assert (w * 14, h * 14) != size
    assert MIN_PIXELS <= (w * 14) * (h * 14) <= MAX_PIXELS
    expected = {(150, 99): (140, 112), (61, 200): (56, 196), (61, 40): (84, 56), (1200, 900): (1148, 840)}
    assert (w * 14, h * 14) == expected[size]
    policy = prompt_policies[QWEN25_VL]
    assert policy.pixel_bounds == (MIN_PIXELS, MAX_PIXELS)
    assert policy.encode_prompts([observation])["image_grid_thw"][0].tolist() == [1, h, w]


def test_load_processor_takes_the_envs_pixel_bounds_by_default():
    """By default the envs' bounds (the paper's 3,136-1,000,000: one frame for the model and the reward);
    ``None`` keeps the released files' max_pixels (12,845,056)."""
    from agents.policies.processor import load_processor

    def bounds(processor) -> tuple[int, int]:
        return processor.image_processor.size["shortest_edge"], processor.image_processor.size["longest_edge"]

    assert bounds(load_processor(real_dir(QWEN25_VL))) == (MIN_PIXELS, MAX_PIXELS) == (3136, 1_000_000)
    released = load_processor(real_dir(QWEN25_VL), min_pixels=None, max_pixels=None)
    assert bounds(released) == (3136, 12_845_056)
