"""benchmarks/intervals.py: IQM, scene scores and the two-level bootstrap, on inputs worked out by hand."""

import numpy as np
import pytest

from benchmarks.intervals import (
    Interval,
    bootstrap_intervals,
    iqm,
    scene_scores,
    scene_weights,
    score_matrix,
    seed_iqm,
)


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([0.0, 10.0, 20.0, 30.0, 1000.0]) == pytest.approx(20.0)  # 5 values: the middle 3
    assert iqm([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]) == pytest.approx(4.5)  # 8: the middle 4
    assert iqm([3.0, 5.0]) == pytest.approx(4.0)  # fewer than 4: nothing to cut


def test_a_seed_is_its_mean_over_scenes_and_the_seeds_are_aggregated_by_iqm():
    matrix = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.0, 0.0], [1.0, 0.0]])
    # seed means 0.5, 1.0, 0.5, 0.0, 0.5 -> sorted 0, .5, .5, .5, 1 -> the middle three
    assert seed_iqm(matrix) == pytest.approx(0.5)


def test_weighted_by_their_images_scenes_give_the_mean_over_images():
    scenes, hits = ["a", "a", "a", "b"], [1, 1, 1, 0]  # one scene shown three times, solved; one missed
    matrix, keys = score_matrix([(scenes, hits)])
    weights = scene_weights(scenes, keys)
    assert weights.tolist() == [3.0, 1.0]
    assert seed_iqm(matrix) == pytest.approx(0.5) and seed_iqm(matrix, weights) == pytest.approx(0.75)
    # the weights travel with the scenes: drawing a twice scores 1, b twice 0, one of each 0.75
    out = bootstrap_intervals({"m": matrix}, weights)["m"]
    assert (out.point, out.low, out.high) == (0.75, 0.0, 1.0)
    with pytest.raises(ValueError, match="weights must be 2"):
        bootstrap_intervals({"m": matrix}, [1.0])


def test_a_scene_scores_the_mean_of_its_samples():
    assert scene_scores(["a", "b", "a", "a"], [1, 0, 0, 1]) == {"a": pytest.approx(2 / 3), "b": 0.0}
    with pytest.raises(ValueError, match="3 scene keys for 2"):
        scene_scores(["a", "b", "c"], [1, 0])


def test_the_score_matrix_has_a_row_per_seed_and_a_column_per_scene():
    matrix, keys = score_matrix([(["b", "a", "b"], [1, 1, 0]), (["a", "b", "b"], [0, 1, 1])])
    assert keys == ["a", "b"]
    assert matrix.tolist() == [[1.0, 0.5], [0.0, 1.0]]
    with pytest.raises(ValueError, match="seed 1 was evaluated on other scenes"):
        score_matrix([(["a", "b"], [1, 1]), (["a", "c"], [1, 1])])
    with pytest.raises(ValueError, match="no seeds"):
        score_matrix([])


def test_equal_scores_give_a_zero_width_interval():
    out = bootstrap_intervals({"flat": np.full((5, 40), 0.7)})["flat"]
    assert (
        out.point == pytest.approx(0.7) and out.low == pytest.approx(0.7) and out.high == pytest.approx(0.7)
    )


def test_one_seed_two_scenes_resamples_the_scenes():
    # draws of 2 scenes from {0, 1}: mean 0 (1/4), 0.5 (1/2), 1 (1/4): the 2.5% and 97.5% points are 0 and 1
    out = bootstrap_intervals({"m": np.array([[0.0, 1.0]])})["m"]
    assert (out.point, out.low, out.high) == (0.5, 0.0, 1.0)


def test_seeds_are_drawn_as_whole_rows():
    # seed 0 fails every scene, seed 1 solves every one: a draw of both seeds as seed 0 (1 in 4) scores 0.
    # Drawing a seed per scene (rliable's stratified draws) would give about [0.40, 0.60] here.
    out = bootstrap_intervals({"m": np.array([[0.0] * 50, [1.0] * 50])})["m"]
    assert (out.point, out.low, out.high) == (0.5, 0.0, 1.0)


def test_scene_spread_and_seed_spread_both_widen_the_interval():
    rng = np.random.default_rng(1)
    scenes = rng.random(60)  # scenes of different difficulty
    one_seed = bootstrap_intervals({"m": scenes[None, :].repeat(5, axis=0)})["m"]
    seed_offsets = np.array([-0.2, -0.1, 0.0, 0.1, 0.2])[:, None]
    both = bootstrap_intervals({"m": scenes[None, :] + seed_offsets})["m"]
    assert one_seed.high - one_seed.low > 0.05  # scenes alone: about 4 standard errors of 60 uniforms
    assert both.high - both.low > one_seed.high - one_seed.low + 0.05


def test_scenes_drawn_within_strata_keep_each_stratum_s_share():
    # one seed; stratum x holds scenes scoring 0 and 1, stratum y one scene (scoring 1) shown 4 times
    matrix, weights = np.array([[0.0, 1.0, 1.0]]), [1.0, 1.0, 4.0]
    out = bootstrap_intervals({"m": matrix}, weights, strata=["x", "x", "y"])["m"]
    # x's two draws: 0+0, 1+1 (1/4 each) or one of each; y is always drawn once: (0 + 4) / 6 .. (2 + 4) / 6
    assert out.point == pytest.approx(5 / 6)
    assert out.low == pytest.approx(4 / 6) and out.high == pytest.approx(1.0)
    loose = bootstrap_intervals({"m": matrix}, weights)["m"]  # y drawn 0 to 3 times: down to 0
    assert loose.low == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 strata labels for 3 scenes"):
        bootstrap_intervals({"m": matrix}, strata=["x", "y"])


def test_paired_matrices_share_their_draws():
    rng = np.random.default_rng(2)
    before = rng.random((5, 30))
    out = bootstrap_intervals({"before": before, "after": before + 0.25})
    assert out["after"].low == pytest.approx(out["before"].low + 0.25)
    assert out["after"].high == pytest.approx(out["before"].high + 0.25)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    matrix = np.random.default_rng(3).random((5, 30))
    first, again = bootstrap_intervals({"m": matrix}, seed=7), bootstrap_intervals({"m": matrix}, seed=7)
    assert first == again
    assert bootstrap_intervals({"m": matrix}, seed=8)["m"] != first["m"]


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="share one non-empty"):
        bootstrap_intervals({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_intervals({"a": np.array([[np.nan, 1.0]])})
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_intervals({"a": np.zeros((2, 3))}, confidence=95)
    assert bootstrap_intervals({}) == {}


def test_interval_formats():
    assert Interval(41.0, 38.25, 44.0).format() == "41.0 [38.2, 44.0]"
    assert Interval(59.0, 57.5, 60.0).format(signed=True) == "+59.0 [+57.5, +60.0]"
    assert Interval(0.5, 0.25, 1.0).scaled(100) == Interval(50.0, 25.0, 100.0)
