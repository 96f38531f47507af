import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_env.frames import CoordinateFrame, smart_resize


@pytest.mark.parametrize(
    "h, w, expected",
    [
        (480, 640, (476, 644)),  # round to multiples of 28
        (112, 112, (112, 112)),
        (20, 20, (56, 56)),  # below min_pixels 3136 = 56*56: scaled up
        (3000, 4000, (840, 1148)),  # above 1e6: beta = sqrt(12), 3000/beta/28 = 30.9 -> 30*28
    ],
)
def test_smart_resize_known_values(h, w, expected):
    assert smart_resize(h, w) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(10, 5000), st.integers(10, 5000))
def test_smart_resize_matches_transformers(h, w):
    # the PIL image processor's module imports without torchvision (the torch one does not)
    transformers_qwen = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    if max(h, w) / min(h, w) > 200:
        return
    ours = smart_resize(h, w, min_pixels=3136, max_pixels=1_000_000)
    theirs = transformers_qwen.smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=1_000_000)
    assert ours == tuple(theirs)


def test_smart_resize_rejects_bad_sizes():
    with pytest.raises(ValueError):
        smart_resize(0, 10)
    with pytest.raises(ValueError):
        smart_resize(10, 5000)


def test_relative_1000_by_hand():
    frame = CoordinateFrame.relative_1000(width=200, height=100)
    np.testing.assert_allclose(frame.from_pixels([20, 10, 100, 50]), [100, 100, 500, 500])
    np.testing.assert_allclose(frame.to_pixels([[500, 500]]), [[100, 50]])


def test_resized_pixels_by_hand():
    frame = CoordinateFrame.resized_pixels(width=640, height=480)
    assert frame.extent == (644.0, 476.0)
    np.testing.assert_allclose(frame.from_pixels([640, 480]), [644, 476])


@given(st.integers(1, 4000), st.integers(1, 4000), st.lists(st.floats(0, 4000), min_size=4, max_size=4))
def test_round_trip(w, h, box):
    for frame in (CoordinateFrame.relative_1000(w, h), CoordinateFrame.pixels(w, h)):
        np.testing.assert_allclose(frame.to_pixels(frame.from_pixels(box)), box, rtol=1e-9, atol=1e-9)


def test_empty_arrays_keep_their_shape():
    frame = CoordinateFrame.relative_1000(10, 10)
    assert frame.to_pixels(np.zeros((0, 4))).shape == (0, 4)
