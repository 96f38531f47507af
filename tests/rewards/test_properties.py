"""Properties of every scorer x every format: never raise, finite, in range; the oracle earns the max."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_env.data.sample import Sample
from perception_env.formats import FORMATS, get_format, strip_stop_tokens
from perception_env.rewards import (
    CountingRewardConfig,
    DetectionRewardConfig,
    GroundingRewardConfig,
    score_counting,
    score_detection,
    score_grounding,
    score_ocr,
)

W, H = 640, 480  # Qwen2.5-VL: 644 x 476, a non-trivial frame
BOXES = np.array([[10, 20, 200, 220], [300, 100, 600, 460], [50, 300, 150, 470]], float)
SAMPLE = Sample(
    "s",
    W,
    H,
    boxes=BOXES,
    labels=("person", "dog", "cup"),
    points=(BOXES[:, :2] + BOXES[:, 2:]) / 2,
    query="dog",
    text="Hello world, 2025.",
)
GROUNDING = Sample("g", W, H, boxes=BOXES[:1], labels=("person",), query="the person")
EMPTY = Sample("e", W, H, query="dog")  # an image with nothing to find
SCORERS = [
    (score_detection, SAMPLE, DetectionRewardConfig()),
    (score_detection, EMPTY, DetectionRewardConfig(fp_fn_penalty=0.5)),
    (score_detection, SAMPLE, DetectionRewardConfig(kind="matched-iou")),
    (score_detection, SAMPLE, DetectionRewardConfig(fp_fn_penalty=0.5)),
    (score_counting, SAMPLE, None),
    (score_counting, SAMPLE, CountingRewardConfig(kind="exact")),
    (score_counting, EMPTY, None),
    (score_grounding, GROUNDING, None),
    (score_grounding, GROUNDING, GroundingRewardConfig(format_weight=0.5)),
    (score_ocr, SAMPLE, None),
]

FRAGMENTS = [
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "(",
    ")",
    ",",
    " ",
    "\n",
    "0",
    "7",
    "999",
    "1000",
    "-",
    ".",
    "e",
    "nan",
    "inf",
    "1e309",
    "[",
    "]",
    "{",
    "}",
    ":",
    '"',
    "'",
    '[{"bbox_2d":',
    '"point_2d":',
    '"label": "dog"',
    "```json\n",
    "```",
    "dog",
    "three",
    "NaN",
    "Infinity",
    "ınf",
    "ſeven",
    "İnfinity",
    "<|im_end|>",
    "<|endoftext|>",  # Unicode case-folding look-alikes; stop tokens
]
answers = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join),
)


def _check(result):
    assert math.isfinite(result.reward) and 0.0 <= result.reward <= result.max_reward
    assert all(math.isfinite(v) for v in result.components.values())
    info = result.to_info()
    json.dumps(info, allow_nan=False)
    if not result.parsed.well_formed:  # an answer that could not be read cleanly says why
        assert isinstance(info["reason"], str) and info["reason"], info


def test_every_task_and_format_is_covered():
    assert {scorer.__name__ for scorer, _, _ in SCORERS} == {
        "score_detection",
        "score_counting",
        "score_grounding",
        "score_ocr",
    }
    assert set(FORMATS) == {"qwen2-vl", "qwen2.5-vl", "qwen2-vl-points", "number", "text"}


@settings(max_examples=120, deadline=None)
@given(answers)
def test_any_answer_any_format_any_task_is_finite_and_in_range(answer):
    for fmt in FORMATS.values():
        for scorer, sample, cfg in SCORERS:
            _check(scorer(answer, sample, fmt, None, cfg))


any_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))
json_objects = st.lists(
    st.tuples(
        st.sampled_from(["box", "point"]),
        st.lists(any_number, min_size=4, max_size=4),
        st.one_of(st.none(), st.sampled_from(["person", "dog", "cup", "", "DOG "])),
    ),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(json_objects)
def test_any_json_objects_any_numbers_are_finite_and_in_range(objs):
    """Qwen2.5-VL answers with arbitrary numbers (NaN, inf, negative, huge, inverted) in valid JSON."""
    items = []
    for kind, nums, label in objs:
        item = {"bbox_2d": nums} if kind == "box" else {"point_2d": nums[:2]}
        if label is not None:
            item["label"] = label
        items.append(item)
    answer = json.dumps(items)  # NaN/inf become the non-standard NaN/Infinity tokens models also write
    for scorer, sample, cfg in SCORERS:
        _check(scorer(answer, sample, "qwen2.5-vl", None, cfg))


def _oracle(task, fmt, sample):
    frame = fmt.make_frame(sample.width, sample.height)
    if task == "ocr":
        return fmt.write(text=sample.text)
    if task == "counting" and fmt.name in ("number",):
        return fmt.write(count=len(sample.points))
    if task == "counting" and fmt.name in ("qwen2-vl-points", "qwen2.5-vl"):
        return fmt.write(points=sample.points, labels=[sample.query] * len(sample.points), frame=frame)
    labels = [sample.query] * len(sample.boxes) if task == "counting" else list(sample.labels)
    return fmt.write(boxes=sample.boxes, labels=labels, frame=frame)


@pytest.mark.parametrize(
    "task, scorer, sample, names",
    [
        ("detection", score_detection, SAMPLE, ["qwen2-vl", "qwen2.5-vl"]),
        ("counting", score_counting, SAMPLE, ["qwen2-vl", "qwen2.5-vl", "qwen2-vl-points", "number"]),
        ("grounding", score_grounding, GROUNDING, ["qwen2-vl", "qwen2.5-vl"]),
        ("ocr", score_ocr, SAMPLE, ["text"]),
        ("detection", score_detection, EMPTY, ["qwen2-vl", "qwen2.5-vl"]),  # "[]" / "" on an empty image
        ("counting", score_counting, EMPTY, ["qwen2-vl", "qwen2.5-vl", "qwen2-vl-points", "number"]),
    ],
)
def test_oracle_answer_earns_the_max(task, scorer, sample, names):
    for name in names:
        fmt = get_format(name)
        res = scorer(_oracle(task, fmt, sample), sample, fmt)
        assert res.parsed.well_formed, (name, res.parsed.problems)
        assert res.reward >= 0.98 * res.max_reward, (task, name, res.reward, res.components)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 300), st.integers(30, 200), st.integers(30, 150)),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_counting_invariant_to_prediction_order(objs, data):
    fmt = get_format("qwen2.5-vl")
    frame = fmt.make_frame(W, H)
    pts = np.array([[x + w / 2, y + h / 2] for x, y, w, h in objs])
    order = data.draw(st.permutations(range(len(objs))))
    r1 = score_counting(fmt.write(points=pts, labels=["dog"] * len(pts), frame=frame), SAMPLE, fmt).reward
    r2 = score_counting(
        fmt.write(points=pts[order], labels=["dog"] * len(pts), frame=frame), SAMPLE, fmt
    ).reward
    assert r1 == pytest.approx(r2, abs=1e-9)


stop_runs = st.lists(st.sampled_from(["<|im_end|>", "<|endoftext|>", " ", "\n", "\t"]), max_size=6).map(
    lambda rest: "".join(rest)
)


@settings(max_examples=150, deadline=None)
@given(answers, st.sampled_from(["<|im_end|>", "<|endoftext|>"]), stop_runs)
def test_trailing_stop_tokens_never_change_the_parse(answer, stop, rest):
    """Any answer, ended as a chat model ends it (a stop token, then more stop tokens / white space),
    parses exactly as the answer alone: same objects, count, text, well-formedness and problems."""
    for fmt in FORMATS.values():
        frame = fmt.make_frame(W, H)
        assert fmt.parse(answer + stop + rest, frame).to_info() == fmt.parse(answer, frame).to_info()


@settings(max_examples=100, deadline=None)
@given(answers, st.sampled_from(["<|im_end|>", "<|endoftext|>"]), st.text(min_size=1, max_size=20))
def test_text_after_a_stop_token_is_never_well_formed(answer, stop, extra):
    if not strip_stop_tokens(extra).strip():  # only stop tokens and white space: that is a trailing run
        extra = "x" + extra
    for fmt in FORMATS.values():
        p = fmt.parse(answer + stop + extra, fmt.make_frame(W, H))
        assert not p.well_formed and any(m.startswith("text after the stop token") for m in p.problems)
