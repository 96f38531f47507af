import numpy as np
import pytest
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


def test_images_of_any_size_round_trip_through_shared_memory():
    """An AsyncVectorEnv's shared memory (its default): before, ImageSpace had none and make_vec failed."""
    import copy

    from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

    space = ImageSpace(shared_memory_pixels=40 * 30)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((30, 40), (7, 13), (1, 1))]
    memory = create_shared_memory(space, n=3)
    batch = read_from_shared_memory(space, memory, n=3)  # read once, as AsyncVectorEnv does: a live view
    for index, image in enumerate(images):
        write_to_shared_memory(space, index, image, memory)
    for got, image in zip(copy.deepcopy(batch), images):
        np.testing.assert_array_equal(got, image)
    write_to_shared_memory(space, 0, images[1], memory)  # smaller than before: only its own pixels
    np.testing.assert_array_equal(batch[0], images[1])
    with pytest.raises(ValueError, match=r"41x30 pixels does not fit the 1200 pixels.*shared_memory"):
        write_to_shared_memory(space, 1, np.zeros((30, 41, 3), np.uint8), memory)


def test_any_unicode_round_trips_through_shared_memory():
    import copy

    from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

    space = UnicodeText(12)
    texts = ["How many 狗?", "", "a\ud800b", "x" * 12]  # a lone surrogate too: the env never refuses a string
    memory = create_shared_memory(space, n=len(texts))
    for index, text in enumerate(texts):
        write_to_shared_memory(space, index, text, memory)
    assert copy.deepcopy(read_from_shared_memory(space, memory, n=len(texts))) == tuple(texts)
    with pytest.raises(ValueError, match="13 characters does not fit UnicodeText"):
        write_to_shared_memory(space, 0, "x" * 13, memory)
