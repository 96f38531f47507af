"""Parsing each answer format: tolerant reading, well-formedness, degenerate coordinates."""

import numpy as np
import pytest

from perception_env.formats import MAX_OBJECTS, get_format
from perception_env.frames import CoordinateFrame

REL = CoordinateFrame.relative_1000(1000, 1000)  # relative units == pixels: easy to read
R, RE, B, BE = "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"
Q2, Q25, PTS, NUM, TXT = (
    get_format(n) for n in ("qwen2-vl", "qwen2.5-vl", "qwen2-vl-points", "number", "text")
)


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
        ('[{"bbox_2d": [1' + "0" * 400 + ",2,3,4]}]", 0),  # int too big for a float: inf -> dropped
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


# --------------------------------------------------------------------------- how a chat model ends an answer
DOG = np.array([[100.0, 200.0, 300.0, 450.0], [500.0, 500.0, 640.0, 700.0]])
STOP_SUFFIXES = ["<|im_end|>", "<|endoftext|>", "<|im_end|>\n", "<|im_end|>\n<|endoftext|><|endoftext|>  "]


def _perfect(fmt):
    if fmt is NUM:
        return NUM.write(count=2)
    if fmt is TXT:
        return "Hello world"
    return fmt.write(boxes=DOG, labels=["dog", "dog"], frame=REL)


@pytest.mark.parametrize("fmt", [Q2, Q25, PTS, NUM, TXT], ids=lambda f: f.name)
@pytest.mark.parametrize("suffix", STOP_SUFFIXES)
def test_trailing_stop_tokens_end_the_answer(fmt, suffix):
    """An answer decoded with skip_special_tokens=False ends in its stop token(s): read as without them."""
    plain, stopped = fmt.parse(_perfect(fmt), REL), fmt.parse(_perfect(fmt) + suffix, REL)
    assert plain.well_formed and stopped.well_formed and stopped.problems == []
    assert stopped.to_info() == plain.to_info()
    assert stopped.text == (None if fmt is not TXT else "Hello world")


@pytest.mark.parametrize("fmt", [Q2, Q25, PTS, NUM, TXT], ids=lambda f: f.name)
@pytest.mark.parametrize("stop", ["<|im_end|>", "<|endoftext|>"])
def test_text_after_a_stop_token_is_extra_text(fmt, stop):
    p = fmt.parse(_perfect(fmt) + stop + " and more", REL)
    assert not p.well_formed
    assert p.problems[0] == f"text after the stop token {stop}: it counts as extra text"
    if fmt is TXT:  # OCR: the extra characters stay in the transcription (and cost edit distance)
        assert p.text == f"Hello world{stop} and more"


# --------------------------------------------------------------------------- Qwen2-VL without its tokens
def test_qwen2_answer_without_its_tokens_is_read_and_says_the_box_tokens_are_missing():
    """skip_special_tokens=True turns <ref>cross</ref><box>(85,156),(241,312)</box> into
    cross(85,156),(241,312)."""
    p = Q2.parse("cross(85,156),(241,312)(1,2),(3,4); dog (5,6),(7,8)", REL)
    assert not p.well_formed
    assert p.problems[0].startswith("box tokens missing") and "skip_special_tokens=True" in p.problems[0]
    assert p.labels == ["cross", "cross", "dog"]  # the text before a box is its label; separators keep it
    np.testing.assert_allclose(p.boxes, [[85, 156, 241, 312], [1, 2, 3, 4], [5, 6, 7, 8]])


def test_qwen2_points_without_ref_tokens():
    p = PTS.parse("dog(10,20),(30,40)", REL)
    assert not p.well_formed and p.labels == ["dog", "dog"]
    assert p.problems[0].startswith("ref tokens missing") and "skip_special_tokens=True" in p.problems[0]
    p = PTS.parse("(10,20), (30,40)", REL)  # refs are optional: still the well-formed unlabelled answer
    assert p.well_formed and p.labels == [None, None]


# --------------------------------------------------------------------------- more than MAX_OBJECTS
def _many(fmt, n, salvage=False):
    if salvage:  # invalid JSON (single quotes): read chunk by chunk
        return "[" + ",".join("{'bbox_2d': [1, 2, 3, 4]}" for _ in range(n)) + "]"
    return fmt.write(boxes=np.tile([[1.0, 2.0, 3.0, 4.0]], (n, 1)), labels=["dog"] * n, frame=REL)


@pytest.mark.parametrize(
    "fmt, salvage",
    [(Q2, False), (Q25, False), (Q25, True), (PTS, False)],
    ids=["qwen2-vl", "qwen2.5-vl", "qwen2.5-vl-salvaged", "points"],
)
def test_over_max_objects_every_format_counts_them_all_and_is_not_well_formed(fmt, salvage):
    at_cap = fmt.parse(_many(fmt, MAX_OBJECTS, salvage), REL)
    assert len(at_cap) == MAX_OBJECTS and at_cap.well_formed == (not salvage)
    over = fmt.parse(_many(fmt, MAX_OBJECTS + 5, salvage), REL)
    assert len(over) == MAX_OBJECTS and not over.well_formed
    assert f"{MAX_OBJECTS + 5} objects: only the first {MAX_OBJECTS} are read" in over.problems
    assert not any(m.startswith("unparsed text") for m in over.problems)


# --------------------------------------------------------------------------- Unicode case folding
@pytest.mark.parametrize(
    "fmt, answer",
    [
        (NUM, "ſeven"),  # long s: re.IGNORECASE matched it to "seven", then the word lookup raised KeyError
        (NUM, "fıve"),  # dotless i
        (Q2, f"{B}(ınf,1),(2,3){BE}"),  # "ınf" matched nan/inf under (?i); float() raised ValueError
        (Q2, "(1,2),(3,ınfınıty)"),
        (PTS, "(ınf,1)"),
        (Q25, "{'bbox_2d': [ınf, 1, 2, 3]}"),
    ],
)
def test_non_ascii_look_alikes_are_not_numbers(fmt, answer):
    p = fmt.parse(answer, REL)
    assert not p.well_formed and len(p.boxes) == 0 and p.count is None and p.problems
