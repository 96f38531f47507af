"""benchmarks/plots.py: round ticks and a PNG that shows each series (drawn with Pillow alone)."""

import numpy as np
import pytest
from PIL import Image

from benchmarks.plots import Series, line_chart, nice_ticks


@pytest.mark.parametrize("lo, hi", [(0, 100), (0, 37.5), (-3, 1234), (0.001, 0.0042), (5, 5)])
def test_nice_ticks_cover_the_range_with_a_round_step(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 5))
    assert 2 <= len(ticks) <= 12


def test_nice_ticks_by_hand():
    assert nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 37.5) == [0, 10, 20, 30, 40]


def test_nice_ticks_refuse_a_non_finite_range():
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0, float("nan"))


def test_line_chart_draws_every_series_in_its_colour(tmp_path):
    red, blue = (230, 0, 0), (0, 0, 230)
    path = line_chart(
        [Series("a", [(0, 10), (50, 90)], red), Series("b", [(0, 50), (80, 20)], blue, dashed=True)],
        tmp_path / "sub" / "c.png",
        title="t",
        x_label="x",
        y_label="y",
        y_range=(0, 100),
        size=(400, 300),
    )
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (300, 400, 3)
    for colour in (red, blue):
        assert (image == colour).all(axis=-1).sum() > 50, colour


def test_line_chart_refuses_nothing_to_plot(tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        line_chart([Series("a", [])], tmp_path / "c.png", title="t", x_label="x", y_label="y")


@pytest.mark.parametrize("legend_at, in_top_half", [("bottom right", False), ("top right", True)])
def test_the_legend_goes_to_the_corner_asked_for(tmp_path, legend_at, in_top_half):
    red = (230, 0, 0)
    # the curve stays in the left tenth: every red pixel in the right half is the legend's sample line
    series = [Series("a", [(0, 50), (10, 50)], red), Series("b", [(100, 50)], (0, 0, 230))]
    path = line_chart(
        series, tmp_path / "c.png", title="t", x_label="x", y_label="y", size=(400, 300), legend_at=legend_at
    )
    image = np.asarray(Image.open(path).convert("RGB"))
    rows, _ = np.nonzero((image[:, 200:] == red).all(axis=-1))
    assert rows.size > 10 and (rows.mean() < 150) == in_top_half


def test_line_chart_refuses_an_unknown_legend_corner(tmp_path):
    with pytest.raises(ValueError, match="legend_at"):
        line_chart(
            [Series("a", [(0, 1)])], tmp_path / "c.png", title="t", x_label="x", y_label="y", legend_at="left"
        )
