"""benchmarks/plots.py: each series drawn as asked (matplotlib), the legend where asked, a PNG of the size asked."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from benchmarks.plots import PALETTE, Series, line_chart, line_figure

LABELS = dict(title="t", x_label="x", y_label="y")


def test_each_series_is_one_line_in_x_order_with_its_colour_and_style():
    red = (230, 0, 0)
    figure = line_figure(
        [Series("a", [(50, 90), (0, 10)], red), Series("b", [(0, 50), (80, 20)], dashed=True)], **LABELS
    )
    a, b = figure.axes[0].get_lines()
    assert a.get_xdata().tolist() == [0, 50] and a.get_ydata().tolist() == [10, 90]  # sorted by x
    assert to_rgb(a.get_color()) == pytest.approx(tuple(c / 255 for c in red))
    # no colour named: the palette's, in the series' position
    assert to_rgb(b.get_color()) == pytest.approx(tuple(c / 255 for c in PALETTE[1]))
    assert (a.get_linestyle(), b.get_linestyle()) == ("-", "--")
    assert to_rgb(b.get_markerfacecolor()) == (1.0, 1.0, 1.0)  # hollow markers on the dashed line
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]


def test_y_range_is_kept_and_x_starts_at_zero():
    figure = line_figure([Series("a", [(20, 40), (60, 55)])], y_range=(0, 100), **LABELS)
    axes = figure.axes[0]
    assert axes.get_ylim() == (0, 100)
    assert axes.get_xlim()[0] == 0 and axes.get_xlim()[1] >= 60


def test_line_chart_writes_a_png_of_the_size_asked_showing_every_series(tmp_path):
    red, blue = (230, 0, 0), (0, 0, 230)
    path = line_chart(
        [Series("a", [(0, 10), (50, 90)], red), Series("b", [(0, 50), (80, 20)], blue, dashed=True)],
        tmp_path / "sub" / "c.png",
        y_range=(0, 100),
        size=(400, 300),
        **LABELS,
    )
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (300, 400, 3)
    for colour in (red, blue):
        assert (np.abs(image.astype(int) - colour).max(axis=-1) <= 2).sum() > 50, colour


@pytest.mark.parametrize("legend_at, in_top_half", [("bottom right", False), ("top right", True)])
def test_the_legend_goes_to_the_corner_asked_for(legend_at, in_top_half):
    series = [Series("a", [(0, 50), (10, 50)]), Series("b", [(100, 50)])]
    figure = line_figure(series, size=(400, 300), legend_at=legend_at, **LABELS)
    figure.canvas.draw()
    box = figure.axes[0].get_legend().get_window_extent()  # display pixels, y up from the bottom
    axes_box = figure.axes[0].get_window_extent()
    assert box.x0 > (axes_box.x0 + axes_box.x1) / 2  # right half
    assert (box.y0 > (axes_box.y0 + axes_box.y1) / 2) == in_top_half


@pytest.mark.parametrize(
    "series, legend_at, message",
    [
        ([Series("a", [])], "bottom right", "nothing to plot"),
        ([Series("a", [(0, 1)])], "left", "legend_at"),
        ([Series("a", [(0, 1), (1, float("nan"))])], "bottom right", "non-finite point"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, series, legend_at, message):
    with pytest.raises(ValueError, match=message):
        line_chart(series, tmp_path / "c.png", legend_at=legend_at, **LABELS)
    assert not (tmp_path / "c.png").exists()
