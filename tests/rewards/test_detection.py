"""Detection rewards on hand-worked cases, and the scorer's frame handling."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_env.data.sample import Sample
from perception_env.formats import get_format
from perception_env.rewards import DetectionRewardConfig, detection_reward, score_detection

A, B = [0, 0, 50, 50], [50, 50, 100, 100]
FAR = [80, 0, 100, 20]
PAPER_TP = DetectionRewardConfig(match_denominator="tp")
MATCHED_IOU = DetectionRewardConfig(kind="matched-iou")


def reward(pred, pred_labels, gt, gt_labels, config=None, well_formed=True):
    return detection_reward(
        np.array(pred, float).reshape(-1, 4),
        pred_labels,
        np.array(gt, float).reshape(-1, 4),
        gt_labels,
        100,
        100,
        well_formed,
        config,
    )


def test_perfect_answer_is_max():
    r, b = reward([A, B], ["cat", "dog"], [A, B], ["cat", "dog"])
    assert r == 3.0 and b["unmatched_predictions"] == [] and b["unmatched_targets"] == []


def test_one_wrong_label_by_hand():
    # Both boxes exact (IoU 1, TP=2, F1=1); pred 1 says "cat" for the dog.
    # 0.25*1 + 0.75*1 + 1*(1 correct label / 2) + 1*(2 IoU / 2) = 2.5
    r, b = reward([A, B], ["cat", "cat"], [A, B], ["cat", "dog"])
    assert r == pytest.approx(2.5)
    assert [(m["pred"], m["target"], m["label_ok"]) for m in b["matching"]] == [(0, 0, True), (1, 1, False)]
    assert reward([A, B], ["cat", "cat"], [A, B], ["cat", "dog"], PAPER_TP)[0] == pytest.approx(2.5)


def test_duplicate_correct_box_does_not_pay_twice():
    single = reward([A], ["cat"], [A], ["cat"])[0]
    # duplicate: TP=1, F1 = 2*1/(2+1) = 2/3; label 1/2, IoU 1/2 (D = max(2,1))
    # 0.25 + 0.75*2/3 + 0.5 + 0.5 = 1.75
    double, b = reward([A, A], ["cat", "cat"], [A], ["cat"])
    assert single == 3.0 and double == pytest.approx(1.75)
    assert b["unmatched_predictions"] == [1]
    # the official "mean over TP matches": 0.25 + 0.5 + 1 + 1 = 2.75, still < 3
    assert reward([A, A], ["cat", "cat"], [A], ["cat"], PAPER_TP)[0] == pytest.approx(2.75)


def test_missing_target_costs():
    # TP=1 of 2 targets: F1 = 2/3, label 1/2, IoU 1/2 -> 1.75
    r, b = reward([A], ["cat"], [A, B], ["cat", "dog"])
    assert r == pytest.approx(1.75) and b["unmatched_targets"] == [1]
    assert reward([A], ["cat"], [A, B], ["cat", "dog"], PAPER_TP)[0] < 3.0  # via F1 only: 2.75


def test_iou_threshold_is_strict():
    # [0,0,10,5] vs [0,0,10,10]: IoU 0.5 exactly -> not a TP -> format term only
    assert reward([[0, 0, 10, 5]], ["a"], [[0, 0, 10, 10]], ["a"])[0] == pytest.approx(0.25)
    # IoU 0.6 -> 0.25 + 0.75 + 1 + 0.6
    assert reward([[0, 0, 10, 6]], ["a"], [[0, 0, 10, 10]], ["a"])[0] == pytest.approx(2.6)


def test_fp_fn_penalty_by_hand():
    cfg = DetectionRewardConfig(fp_fn_penalty=0.5)
    # A + a far extra box vs A: 1.75 - 0.5 * (1/2 + 0/1) = 1.5
    assert reward([A, FAR], ["cat", "cat"], [A], ["cat"], cfg)[0] == pytest.approx(1.5)
    # predictions but no targets: 0.25 - 0.5 * 1 -> clamped to 0
    assert reward([A], ["cat"], [], [], cfg)[0] == 0.0


def test_empty_cases():
    assert reward([], [], [], [])[0] == 3.0  # "[]" on an empty image
    assert reward([], [], [], [], well_formed=False)[0] == 0.0  # unreadable text is not "nothing here"
    assert reward([], [], [A], ["cat"])[0] == pytest.approx(0.25)  # format term only
    assert reward([A], ["cat"], [], [])[0] == pytest.approx(0.25)  # penalised: F1 = 0
    assert reward([], [], [], [], MATCHED_IOU)[0] == 1.0


def test_matched_iou_kind_by_hand():
    # wrong label earns nothing: (1 + 0) / 2
    assert reward([A, B], ["cat", "cat"], [A, B], ["cat", "dog"], MATCHED_IOU)[0] == pytest.approx(0.5)
    assert reward([[0, 0, 10, 6]], ["a"], [[0, 0, 10, 10]], ["a"], MATCHED_IOU)[0] == pytest.approx(0.6)
    # duplicate: 1 / max(2, 1)
    assert reward([A, A], ["cat", "cat"], [A], ["cat"], MATCHED_IOU)[0] == pytest.approx(0.5)


def test_labels_compared_case_and_space_insensitively_and_optional():
    assert reward([A], ["  Traffic   LIGHT "], [A], ["traffic light"])[0] == 3.0
    assert reward([A], [None], [A], ["cat"])[0] == pytest.approx(2.0)
    assert reward([A], [None], [A], [])[0] == 3.0  # targets without labels: labels not checked


def test_config_validation():
    with pytest.raises(ValueError):
        DetectionRewardConfig(kind="coco")
    assert DetectionRewardConfig().max_reward == 3.0 and MATCHED_IOU.max_reward == 1.0


# --------------------------------------------------------------------------- scorer
def _coco_like_sample():
    # 640x480 -> Qwen2.5-VL resizes to 644x476, so answer units != pixels
    boxes = np.array([[10, 20, 200, 220], [300, 100, 600, 460], [50, 300, 150, 470]], float)
    return Sample("d", 640, 480, boxes=boxes, labels=("person", "dog", "cup"))


def test_oracle_scores_near_max_and_wrong_frame_scores_low():
    s = _coco_like_sample()
    fmt = get_format("qwen2.5-vl")
    frame = fmt.make_frame(640, 480)
    assert frame.extent == (644.0, 476.0)
    oracle = fmt.write(boxes=s.boxes, labels=s.labels, frame=frame)
    res = score_detection(oracle, s, fmt)
    assert res.reward >= 0.98 * 3.0 and res.parsed.well_formed
    # the same answer in relative-1000 units (a Qwen2-VL habit) reads as wrong pixels
    wrong = fmt.write(boxes=s.boxes, labels=s.labels, frame=get_format("qwen2-vl").make_frame(640, 480))
    res = score_detection(wrong, s, fmt)
    assert res.reward < 1.0


def test_oracle_exact_when_frame_is_pixel_aligned():
    boxes = np.array([[10, 20, 200, 220], [300, 100, 600, 460]], float)
    s = Sample("d", 644, 476, boxes=boxes, labels=("person", "dog"))  # multiples of 28: scale 1
    fmt = get_format("qwen2.5-vl")
    assert (
        score_detection(
            fmt.write(boxes=boxes, labels=s.labels, frame=fmt.make_frame(644, 476)), s, fmt
        ).reward
        == 3.0
    )
    s = Sample("d", 1000, 1000, boxes=boxes, labels=("person", "dog"))  # relative-1000 == pixels
    fmt = get_format("qwen2-vl")
    assert (
        score_detection(
            fmt.write(boxes=boxes, labels=s.labels, frame=fmt.make_frame(1000, 1000)), s, fmt
        ).reward
        == 3.0
    )


def test_scorer_unreadable_answer_has_reason_and_info_is_json():
    res = score_detection("I see a dog somewhere.", _coco_like_sample(), "qwen2.5-vl")
    assert res.reward == 0.0 and res.reason
    json.dumps(res.to_info())
    assert res.to_info()["unmatched_targets"] == [0, 1, 2]


boxes_st = st.lists(
    st.tuples(
        st.integers(0, 500),
        st.integers(0, 380),
        st.integers(20, 140),
        st.integers(20, 100),
        st.sampled_from(["person", "dog", "cup"]),
    ),
    min_size=0,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(preds=boxes_st, targets=boxes_st, data=st.data())
def test_reward_invariant_to_prediction_order(preds, targets, data):
    fmt = get_format("qwen2.5-vl")
    s = Sample(
        "p",
        640,
        480,
        boxes=np.array([[x, y, x + w, y + h] for x, y, w, h, _ in targets], float).reshape(-1, 4),
        labels=tuple(t[4] for t in targets),
    )
    order = data.draw(st.permutations(range(len(preds))))
    answers = []
    for objs in (preds, [preds[i] for i in order]):
        answers.append(
            json.dumps([{"bbox_2d": [x, y, x + w, y + h], "label": lab} for x, y, w, h, lab in objs])
        )
    for cfg in (DetectionRewardConfig(), MATCHED_IOU, DetectionRewardConfig(fp_fn_penalty=0.5)):
        r1, r2 = (score_detection(a, s, fmt, config=cfg).reward for a in answers)
        assert r1 == pytest.approx(r2, abs=1e-9)
