"""Line charts as PNG with matplotlib (the ``viz`` extra), for the benchmarks' figures.

    from benchmarks.plots import Series, line_chart
    line_chart([Series("GRPO", [(0, 0.4), (60, 0.9)])], "curve.png", title="...", x_label="s", y_label="%")

One pair of axes, a light grid, a legend in the corner the curves leave free, solid or dashed lines with
point markers (hollow on dashed lines, so two series of one colour stay apart). Figures are drawn on
matplotlib's Agg canvas without pyplot: no display, no global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

# Colour-blind-safe (Okabe-Ito) as 0-255 RGB, in the order series take them when they name none.
PALETTE = (
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (230, 159, 0),
    (0, 0, 0),
)
LEGEND_CORNERS = {"bottom right": "lower right", "top right": "upper right"}  # ours -> matplotlib's loc
DPI = 100  # sizes are given in pixels: figsize = pixels / DPI


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x, y) in data units, drawn in x order; ``color`` 0-255 RGB."""

    label: str
    points: tuple[tuple[float, float], ...] | list[tuple[float, float]]
    color: tuple[int, int, int] | None = None
    dashed: bool = False


def _check(series: list[Series], legend_at: str, where: str) -> None:
    if legend_at not in LEGEND_CORNERS:
        raise ValueError(f"legend_at must be one of {sorted(LEGEND_CORNERS)}, not {legend_at!r}")
    if not any(s.points for s in series):
        raise ValueError(f"{where}: nothing to plot (every series is empty)")
    for s in series:
        for x, y in s.points:
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"{where}: series {s.label!r} has a non-finite point ({x}, {y})")


def line_figure(
    series: list[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (900, 540),
    legend_at: str = "bottom right",
) -> Figure:
    """``series`` on one pair of axes, as a matplotlib :class:`~matplotlib.figure.Figure` of ``size`` pixels.

    ``y_range``: fixed y limits (e.g. (0, 100) for a percentage), else matplotlib's, around the data.
    The x axis starts at 0 (or the smallest x, if negative). ``legend_at``: "bottom right" (rising
    curves) or "top right" (falling ones, e.g. an error).
    """
    _check(series, legend_at, title)
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    for k, s in enumerate(series):
        color = tuple(c / 255 for c in (s.color or PALETTE[k % len(PALETTE)]))
        xs, ys = zip(*sorted(s.points)) if s.points else ((), ())
        axes.plot(
            xs,
            ys,
            label=s.label,
            color=color,
            linestyle="--" if s.dashed else "-",
            linewidth=2.5,
            marker="o",
            markersize=6,
            markerfacecolor="white" if s.dashed else color,
            markeredgewidth=2,
        )
    smallest_x = min(x for s in series for x, _ in s.points)
    axes.set_xlim(left=min(0.0, smallest_x))
    if y_range is not None:
        axes.set_ylim(*y_range)
    axes.grid(color="#e1e1e1")
    axes.set_axisbelow(True)
    axes.set_title(title, fontsize=11)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.legend(loc=LEGEND_CORNERS[legend_at], fontsize=9, framealpha=1.0)
    return figure


def line_chart(series: list[Series], path: str | Path, **options) -> Path:
    """:func:`line_figure` saved as a PNG at ``path`` (folders created); returns the path."""
    path = Path(path)
    figure = line_figure(series, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path
