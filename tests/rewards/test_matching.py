"""IoU, GIoU and Hungarian matching against hand-computed values."""

import numpy as np
import pytest

from perception_env.rewards.matching import (
    box_area,
    box_cxcywh,
    box_iou,
    generalized_box_iou,
    hungarian_match,
)


def test_iou_and_giou_by_hand():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 1, 3, 3], [2, 0, 3, 1], [0, 0, 2, 2]])
    # vs [1,1,3,3]: inter 1, union 4+4-1 = 7, enclosing 3x3 = 9 -> GIoU = 1/7 - (9-7)/9
    # vs [2,0,3,1]: touching, inter 0, union 5, enclosing 3x2 = 6 -> GIoU = 0 - 1/6
    # vs itself: 1, 1
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0.0, 1.0]])
    np.testing.assert_allclose(generalized_box_iou(a, b), [[1 / 7 - 2 / 9, -1 / 6, 1.0]])


def test_disjoint_giou_by_hand():
    # [0,0,1,1] vs [2,0,3,1]: union 2, enclosing 3 -> GIoU = -(3-2)/3
    assert generalized_box_iou([[0, 0, 1, 1]], [[2, 0, 3, 1]])[0, 0] == pytest.approx(-1 / 3)


def test_degenerate_boxes_never_nan():
    point = np.array([[1, 1, 1, 1]])
    line = np.array([[0, 0, 0, 5]])
    square = np.array([[0, 0, 4, 4]])
    with np.errstate(all="raise"):  # any division by zero would raise here
        assert box_iou(point, point)[0, 0] == 0.0  # empty union -> 0
        assert generalized_box_iou(point, point)[0, 0] == 0.0  # empty enclosing box -> GIoU = IoU = 0
        assert box_iou(line, square)[0, 0] == 0.0
        # enclosing [0,0,4,5] = 20, union 0 + 16 = 16 -> GIoU = 0 - 4/20
        assert generalized_box_iou(line, square)[0, 0] == pytest.approx(-0.2)
        # inverted box counts as empty
        assert box_area([[4, 4, 0, 0]])[0] == 0.0


def test_shapes_and_empty():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert generalized_box_iou(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    np.testing.assert_allclose(box_cxcywh([[0, 0, 4, 2]]), [[2, 1, 4, 2]])


def test_hungarian_by_hand():
    cost = np.array([[4, 1, 3], [2, 0, 5], [3, 2, 2]], dtype=float)
    # optimum 1 + 2 + 2 = 5: row0->col1, row1->col0, row2->col2
    rows, cols = hungarian_match(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]


def test_hungarian_rectangular_and_empty():
    rows, cols = hungarian_match(np.array([[5.0], [1.0], [3.0]]))
    assert rows.tolist() == [1] and cols.tolist() == [0]
    for shape in [(0, 3), (3, 0), (0, 0)]:
        rows, cols = hungarian_match(np.zeros(shape))
        assert len(rows) == len(cols) == 0


def test_hungarian_tolerates_inf_and_nan():
    cost = np.array([[np.inf, 1.0], [2.0, np.nan]])
    rows, cols = hungarian_match(cost)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
