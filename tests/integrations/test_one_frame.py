"""One image frame everywhere: the processor load_processor gives resizes images as the envs do, so an answer
in pixels of the image the model saw is scored in those pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import perception_env  # noqa: F401  (registers the envs)
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, CoordinateFrame
from perception_env.integrations.common import check_processor_frame, processor_bounds

QWEN25_VL = Path(__file__).parents[1] / "fixtures" / "qwen-vl-real" / "Qwen2.5-VL-3B-Instruct"


@pytest.fixture(scope="module")
def processors():
    """Qwen2.5-VL's released processor files loaded with load_processor's defaults, and with the checkpoint's
    own bounds (``None``: 3136..12,845,056 in the released preprocessor_config.json)."""
    from agents.policies.processor import load_processor

    return load_processor(QWEN25_VL), load_processor(QWEN25_VL, min_pixels=None, max_pixels=None)


def seen_size(processor, width: int, height: int) -> tuple[int, int]:
    """(width, height) in pixels of the image the model is shown, from the processor's patch grid."""
    out = processor.image_processor(
        images=[np.zeros((height, width, 3), dtype=np.uint8)], return_tensors="np"
    )
    _, rows, columns = out["image_grid_thw"][0].tolist()
    patch = processor.image_processor.patch_size
    return columns * patch, rows * patch


def test_load_processor_defaults_to_the_envs_bounds(processors):
    default, checkpoints_own = processors
    env = gym.make("PerceptionR1/Detection-v0", difficulty="easy", answer_format="qwen2.5-vl").unwrapped
    assert (
        processor_bounds(default)
        == (env.min_pixels, env.max_pixels)
        == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    )
    assert processor_bounds(checkpoints_own) == (3136, 12_845_056)
    # a 2000 x 1500 photo: Qwen2.5-VL answers in pixels of the image it saw; the env scores in its frame
    frame = CoordinateFrame.resized_pixels(2000, 1500)
    assert frame.extent == (1148.0, 840.0)
    assert seen_size(default, 2000, 1500) == (1148, 840)
    assert seen_size(checkpoints_own, 2000, 1500) == (1988, 1512)  # another frame: answers scored wrong
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_processor_frame(default, env, "here")
    with pytest.warns(UserWarning, match="here: the processor resizes images to 3136..12845056 pixels"):
        assert not check_processor_frame(checkpoints_own, env, "here")
