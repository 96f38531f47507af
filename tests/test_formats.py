"""The format registry, the writers, and write -> parse round trips."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_env.formats import FORMATS, AnswerFormat, get_format
from perception_env.frames import CoordinateFrame


def test_registry():
    assert set(FORMATS) == {"qwen2-vl", "qwen2.5-vl", "qwen2-vl-points", "number", "text"}
    for name, fmt in FORMATS.items():
        assert isinstance(fmt, AnswerFormat) and fmt.name == name and get_format(name) is fmt
        assert fmt.frame_name in ("relative-1000", "resized-pixels", "none")
    assert get_format(FORMATS["text"]) is FORMATS["text"]
    with pytest.raises(ValueError, match="qwen2.5-vl"):
        get_format("qwen3")


def test_make_frame():
    assert get_format("qwen2-vl").make_frame(640, 480) == CoordinateFrame.relative_1000(640, 480)
    assert get_format("qwen2.5-vl").make_frame(640, 480).extent == (644.0, 476.0)
    assert get_format("number").make_frame(640, 480) is None


def test_writers_exact_strings():
    frame = CoordinateFrame.relative_1000(200, 100)
    boxes = np.array([[20, 10, 60, 50], [0, 0, 200, 100], [10, 10, 20, 20]], float)
    # (20,10) px -> (100,100); right/bottom edge 1000 clamps to 999; consecutive "dog"s share a ref
    assert get_format("qwen2-vl").write(boxes=boxes, labels=["dog", "dog", "cat"], frame=frame) == (
        "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(100,100),(300,500)<|box_end|>"
        "<|box_start|>(0,0),(999,999)<|box_end|>"
        "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(50,100),(100,200)<|box_end|>"
    )
    assert get_format("qwen2-vl-points").write(
        points=[[20, 10], [40, 20]], labels=["dog", "dog"], frame=frame
    ) == ("<|object_ref_start|>dog<|object_ref_end|>(100,100),(200,200)")
    rframe = get_format("qwen2.5-vl").make_frame(640, 480)  # x * 644/640, y * 476/480
    out = get_format("qwen2.5-vl").write(boxes=[[320, 240, 640, 480]], labels=["dog"], frame=rframe)
    assert json.loads(out) == [{"bbox_2d": [322, 238, 644, 476], "label": "dog"}]
    assert (
        get_format("qwen2.5-vl").write(points=[[320, 240]], labels=[None], frame=rframe)
        == '[{"point_2d": [322, 238]}]'
    )
    assert get_format("qwen2.5-vl").write(boxes=np.zeros((0, 4)), labels=[], frame=rframe) == "[]"
    assert get_format("number").write(count=4) == "4"
    assert get_format("number").write(points=np.zeros((3, 2))) == "3"
    assert get_format("text").write(text="abc") == "abc"


def test_writer_rejects_label_count_mismatch():
    with pytest.raises(ValueError):
        get_format("qwen2-vl").write(boxes=[[0, 0, 1, 1]], labels=["a", "b"], frame=None)


@st.composite
def scene(draw):
    w, h = draw(st.integers(50, 2000)), draw(st.integers(50, 2000))
    n = draw(st.integers(0, 6))
    xs = draw(st.lists(st.floats(0, w), min_size=2 * n, max_size=2 * n))
    ys = draw(st.lists(st.floats(0, h), min_size=2 * n, max_size=2 * n))
    boxes = np.array(
        [
            [
                min(xs[2 * i : 2 * i + 2]),
                min(ys[2 * i : 2 * i + 2]),
                max(xs[2 * i : 2 * i + 2]),
                max(ys[2 * i : 2 * i + 2]),
            ]
            for i in range(n)
        ]
    ).reshape(-1, 4)
    labels = draw(st.lists(st.sampled_from(["dog", "cat", "traffic light"]), min_size=n, max_size=n))
    return w, h, boxes, labels


@settings(max_examples=150, deadline=None)
@given(scene(), st.sampled_from(["qwen2-vl", "qwen2.5-vl", "qwen2-vl-points"]))
def test_write_parse_round_trip_within_quantisation(sc, name):
    w, h, boxes, labels = sc
    fmt = get_format(name)
    frame = fmt.make_frame(w, h)
    text = fmt.write(boxes=boxes, labels=labels, frame=frame)
    p = fmt.parse(text, frame)
    assert p.well_formed, (text, p.problems)
    assert p.labels == labels
    # one answer unit (rounding 0.5, plus the clamp of 1000 to 999 in relative-1000) in pixels
    tol = np.array([1 / frame.scale_x, 1 / frame.scale_y]) + 1e-9
    if name == "qwen2-vl-points":
        err = np.abs(p.points - (boxes[:, :2] + boxes[:, 2:]) / 2).reshape(-1, 2)
    else:
        err = np.abs(p.boxes - boxes).reshape(-1, 2, 2)
    assert (err <= tol).all()


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10**6), st.text(max_size=200))
def test_number_and_text_round_trip(count, text):
    assert get_format("number").parse(get_format("number").write(count=count)).count == count
    p = get_format("text").parse(get_format("text").write(text=text))
    assert p.text == text and p.well_formed == bool(text.strip())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_parse_never_raises_on_bytes_garbage(raw):
    for fmt in FORMATS.values():
        for answer in (raw, raw.decode("utf-8", errors="replace"), raw.decode("latin-1")):
            p = fmt.parse(answer, CoordinateFrame.relative_1000(640, 480))
            assert np.isfinite(p.boxes).all() and np.isfinite(p.points).all()
            assert len(p.boxes) == len(p.points) == len(p.labels)


def test_qwen25_decimals_round_trip_exactly():
    """``decimals`` (the exact oracle) maps back to the original pixels; integers lose up to half a unit."""
    fmt = get_format("qwen2.5-vl")
    frame = CoordinateFrame.resized_pixels(640, 480)  # 644 x 476
    boxes = np.array([[5, 400, 25, 420], [10.5, 10, 110, 209.25]])
    exact = fmt.parse(fmt.write(boxes=boxes, labels=["dog", "person"], frame=frame, decimals=4), frame)
    assert exact.well_formed and exact.labels == ["dog", "person"]
    np.testing.assert_allclose(exact.boxes, boxes, atol=1e-3)
    rounded = fmt.parse(fmt.write(boxes=boxes, labels=["dog", "person"], frame=frame), frame)
    assert np.abs(rounded.boxes - boxes).max() > 0.1
    assert fmt.fractional_coordinates and not get_format("qwen2-vl").fractional_coordinates
