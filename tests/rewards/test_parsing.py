"""Parsing each answer format: tolerant reading, well-formedness, degenerate coordinates."""

import numpy as np
import pytest

from perception_env.formats import MAX_OBJECTS, get_format
from perception_env.frames import CoordinateFrame

REL = CoordinateFrame.relative_1000(1000, 1000)  # relative units == pixels: easy to read
R, RE, B, BE = "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"
Q2, Q25, PTS, NUM, TXT = (get_format(n) for n in ("qwen2-vl", "qwen2.5-vl", "qwen2-vl-points", "number", "text"))


# --------------------------------------------------------------------------- qwen2-vl
def test_qwen2_canonical_groups_and_shared_ref():
    a = f"{R}dog{RE}{B}(1,2),(30,40){BE}{B}(5,5),(9,9){BE} {R}cat{RE}{B}(0,0),(10,10){BE}"
    p = Q2.parse(a, REL)
    assert p.well_formed and p.problems == []
    assert p.labels == ["dog", "dog", "cat"]
    np.testing.assert_allclose(p.boxes, [[1, 2, 30, 40], [5, 5, 9, 9], [0, 0, 10, 10]])
    np.testing.assert_allclose(p.points[0], [15.5, 21])


def test_qwen2_converts_relative_frame():
    p = Q2.parse(f"{B}(100,500),(300,750){BE}", CoordinateFrame.relative_1000(640, 480))
    np.testing.assert_allclose(p.boxes, [[64, 240, 192, 360]])
    assert p.labels == [None] and p.well_formed


@pytest.mark.parametrize(
    "answer, box",
    [
        ("(1,2),(30,40)", [1, 2, 30, 40]),  # no tokens
        (f"{B} ( 1 , 2 ) , ( 30 , 40 ) {BE} that's it", [1, 2, 30, 40]),  # spaces, trailing text
        (f"{B}(1.5,2.5),(30.0,40){BE}", [1.5, 2.5, 30, 40]),  # floats
        (f"{B}(-5,2),(30,40){BE}", [0, 2, 30, 40]),  # negative -> clipped
        (f"{R}dog{RE}", None),  # ref without box
        (f"{B}(1,2){BE}", None),  # half a box
    ],
)
def test_qwen2_tolerant_but_not_well_formed(answer, box):
    p = Q2.parse(answer, REL)
    assert not p.well_formed and p.problems
    if box is None:
        assert len(p.boxes) == 0
    else:
        np.testing.assert_allclose(p.boxes, [box])


def test_qwen2_empty_answer_is_well_formed_no_objects():
    p = Q2.parse("  ", REL)
    assert p.well_formed and len(p.boxes) == 0


def test_degenerate_coordinates():
    a = f"{B}(30,40),(1,2){BE}{B}(nan,1),(2,3){BE}{B}(1e309,1),(2,3){BE}{B}(900,900),(1500,990){BE}{B}(5,5),(5,9){BE}"
    p = Q2.parse(a, REL)
    np.testing.assert_allclose(p.boxes, [[1, 2, 30, 40], [900, 900, 1000, 990], [5, 5, 5, 9]])
    text = " | ".join(p.problems)
    assert "object 0: inverted box, corners swapped" in text
    assert "object 1: NaN/inf coordinate, dropped" in text and "object 2: NaN/inf" in text
    assert "object 3: outside the 1000x1000 image, clipped" in text
    assert "object 4: zero-area box" in text
    assert not p.well_formed
    assert [o["prediction"] for o in p.objects] == [0, None, None, 1, 2]


def test_too_many_objects_capped():
    p = Q2.parse(f"{B}(1,2),(3,4){BE}" * (MAX_OBJECTS + 5), REL)
    assert len(p.boxes) == MAX_OBJECTS and any("only the first" in m for m in p.problems)


def test_frame_none_reads_numbers_as_pixels_without_clipping():
    np.testing.assert_allclose(Q2.parse(f"{B}(1,2),(3000,4){BE}", None).boxes, [[1, 2, 3000, 4]])


# --------------------------------------------------------------------------- qwen2.5-vl
PX = CoordinateFrame.pixels(1000, 1000)


def test_qwen25_fenced_list():
    a = '```json\n[{"bbox_2d": [1, 2, 30, 40], "label": "person"}, {"bbox_2d": [5, 5, 9, 9], "label": "dog"}]\n```'
    p = Q25.parse(a, PX)
    assert p.well_formed and p.labels == ["person", "dog"]
    np.testing.assert_allclose(p.boxes, [[1, 2, 30, 40], [5, 5, 9, 9]])


def test_qwen25_converts_resized_frame():
    frame = Q25.make_frame(640, 480)  # 644 x 476
    p = Q25.parse('[{"bbox_2d": [644, 476, 322, 238], "label": "x"}]', frame)
    np.testing.assert_allclose(p.boxes, [[320, 240, 640, 480]])  # inverted -> swapped, then scaled


@pytest.mark.parametrize(
    "answer, n",
    [
        ('Here you go: [{"bbox_2d": [1,2,3,4], "label": "a"}] done', 1),
        ('{"bbox_2d": [1,2,3,4], "label": "a"}', 1),  # single dict
        ('[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6,7,8], "la', 1),  # truncated
        ("[{'bbox_2d': [1,2,3,4], 'label': 'a'}, {'bbox_2d': [5,6,7,8], 'label': 'b',},]", 2),  # python-ish
        ('```json\n[{"bbox_2d": [1,2,3,4], "label": "a"}]', 1),  # unterminated fence
        ('[{"bbox_2d": [1,2,3], "label": "a"}, {"bbox_2d": [1,2,3,4], "label": "b"}]', 1),  # 3 numbers
        ('[{"bbox_2d": [1,2,3,4], "label": 7}]', 1),  # non-str label
        ('[{"bbox_2d": [NaN,2,3,4]}, {"bbox_2d": [1,2,3,4]}]', 1),  # NaN dropped
        ('[{"bbox_2d": [1' + "0" * 400 + ',2,3,4]}]', 0),  # int too big for a float: inf -> dropped
        ('[1, "a", null, {"bbox": [1,2,3,4]}]', 0),
        ("I see nothing", 0),
        ("[[[[[[" * 2000, 0),
    ],
)
def test_qwen25_salvaged_but_not_well_formed(answer, n):
    p = Q25.parse(answer, PX)
    assert not p.well_formed and p.problems and len(p.boxes) == n


def test_qwen25_empty_list_and_points():
    p = Q25.parse("[]", PX)
    assert p.well_formed and len(p.boxes) == 0
    p = Q25.parse('[{"point_2d": [10, 20], "label": "dog"}, {"point_2d": [30.5, 40]}]', PX)
    assert p.well_formed and p.labels == ["dog", None]
    np.testing.assert_allclose(p.points, [[10, 20], [30.5, 40]])
    np.testing.assert_allclose(p.boxes, [[10, 20, 10, 20], [30.5, 40, 30.5, 40]])  # a point's box has no area


# --------------------------------------------------------------------------- points, number, text
def test_points_format():
    p = PTS.parse(f"{R}dog{RE}(10,20), (30,40){R}cat{RE}(5,5)", REL)
    assert p.well_formed and p.labels == ["dog", "dog", "cat"]
    np.testing.assert_allclose(p.points, [[10, 20], [30, 40], [5, 5]])
    p = PTS.parse("points: (10,20) (30.5,40)", REL)
    assert not p.well_formed and len(p.points) == 2


@pytest.mark.parametrize(
    "answer, count, well_formed",
    [
        ("7", 7, True),
        (" 12.\n", 12, True),
        ("Seven", 7, True),
        ("There are 3 dogs and 2 cats.", 3, False),
        ("I count three dogs", 3, False),
        ("3.5", 3, False),
        ("-2", -2, False),
        ("someone", None, False),  # "one" only as a word
        ("none", None, False),
        ("9" * 100, None, False),
        ("", None, False),
    ],
)
def test_number_format(answer, count, well_formed):
    p = NUM.parse(answer, None)
    assert p.count == count and p.well_formed == well_formed
    assert len(p.boxes) == 0


def test_text_format():
    assert TXT.parse(" Hello\n", None).text == " Hello\n" and TXT.parse("x", None).well_formed
    assert not TXT.parse(" \n", None).well_formed


@pytest.mark.parametrize("fmt", [Q2, Q25, PTS, NUM, TXT])
@pytest.mark.parametrize("garbage", [b"\x00\xff[{", None, 42, ["(1,2),(3,4)"], bytearray(b"12")])
def test_non_str_input_is_not_well_formed(fmt, garbage):
    p = fmt.parse(garbage, REL)
    assert not p.well_formed and len(p.boxes) == 0 and p.count is None and "not str" in p.problems[0]
