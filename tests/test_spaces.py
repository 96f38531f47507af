import numpy as np
from gymnasium import spaces

from perception_env.spaces import ImageSpace, UnicodeText, observation_space


def test_unicode_text_contains_what_models_write():
    space = UnicodeText(100)
    for text in [
        "",
        "3",
        '[{"bbox_2d": [1, 2, 3, 4], "label": "狗"}]',
        "<|box_start|>(1,2),(3,4)<|box_end|>\n",
    ]:
        assert space.contains(text)
    assert not space.contains("x" * 101)
    assert not space.contains(b"bytes")


def test_unicode_text_sampling_is_seeded():
    a, b = UnicodeText(seed=1), UnicodeText(seed=1)
    assert [a.sample() for _ in range(5)] == [b.sample() for _ in range(5)]
    assert all(a.contains(a.sample()) for _ in range(50))


def test_image_space_accepts_any_size_rgb_uint8():
    space = ImageSpace(seed=0)
    assert space.contains(np.zeros((7, 1000, 3), np.uint8))
    assert not space.contains(np.zeros((7, 10, 4), np.uint8))
    assert not space.contains(np.zeros((7, 10, 3), np.float32))
    assert not space.contains(np.zeros((7, 10), np.uint8))
    assert all(space.contains(space.sample()) for _ in range(10))


def test_fixed_size_observation_is_a_box():
    space = observation_space((64, 32), 10)
    assert isinstance(space["image"], spaces.Box) and space["image"].shape == (32, 64, 3)
    assert isinstance(observation_space(None, 10)["image"], ImageSpace)
