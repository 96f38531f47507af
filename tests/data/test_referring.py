"""Grounding expressions must pick out exactly one object; checked by an independent parser."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_env.data import ShapesGrounding

PATTERN = re.compile(
    r"^the (?:(leftmost|rightmost|topmost|bottommost) )?(\w+) (\w+)(?: (left of|right of|above|below) the (\w+) (\w+))?$"
)


def _centre(o):
    x1, y1, x2, y2 = o["box"]
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2])


def could_mean(expression: str, objects: list) -> list[int]:
    """Every object a reader might think is meant: ties within a few pixels count as ambiguous."""
    m = PATTERN.match(expression)
    assert m, expression
    extreme, color, shape, relation, a_color, a_shape = m.groups()
    group = [i for i, o in enumerate(objects) if (o["color"], o["shape"]) == (color, shape)]
    if extreme:
        axis, sign = {"leftmost": (0, 1), "rightmost": (0, -1), "topmost": (1, 1), "bottommost": (1, -1)}[
            extreme
        ]
        values = {i: sign * _centre(objects[i])[axis] for i in group}
        return [i for i in group if values[i] <= min(values.values()) + 4]
    if relation:
        anchors = [o for o in objects if (o["color"], o["shape"]) == (a_color, a_shape)]
        assert len(anchors) == 1, f"anchor of {expression!r} is not unique"
        axis, sign = {"left of": (0, 1), "right of": (0, -1), "above": (1, 1), "below": (1, -1)}[relation]
        return [i for i in group if sign * _centre(objects[i])[axis] < sign * _centre(anchors[0])[axis]]
    return group


def check(sample):
    objects, target = sample.meta["objects"], sample.meta["target_index"]
    assert could_mean(sample.query, objects) == [target], (sample.query, objects)
    assert np.array_equal(sample.boxes, np.array([objects[target]["box"]], dtype=float))
    assert sample.labels == (objects[target]["shape"],)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    index=st.integers(0, 999),
    difficulty=st.sampled_from(["easy", "medium", "hard"]),
)
def test_expressions_are_unique(seed, index, difficulty):
    check(ShapesGrounding(difficulty=difficulty, seed=seed)[index])


@pytest.mark.parametrize("difficulty", ["easy", "medium"])
def test_many_expressions_unique_and_spatial_ones_occur(difficulty):
    ds = ShapesGrounding(difficulty=difficulty, size=300)
    kinds = set()
    for i in range(len(ds)):
        s = ds[i]
        check(s)
        kinds |= set(s.meta["expression"]) - {"color", "shape"}
    assert kinds == {"extreme", "relation", "anchor"}


def test_attribute_only_when_unique():
    ds = ShapesGrounding(size=200)
    for i in range(len(ds)):
        s = ds[i]
        t = s.meta["objects"][s.meta["target_index"]]
        twins = sum((o["color"], o["shape"]) == (t["color"], t["shape"]) for o in s.meta["objects"])
        assert (s.query == f"the {t['color']} {t['shape']}") == (twins == 1)
