"""Line charts as PNG with Pillow alone (matplotlib is not a dependency of this project).

    from benchmarks.plots import Series, line_chart
    line_chart([Series("GRPO", [(0, 0.4), (60, 0.9)])], "curve.png", title="...", x_label="s", y_label="%")

Axes with round-number ticks, a light grid, a legend, solid or dashed lines with point markers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe (Okabe-Ito), in the order series take them when they name none.
PALETTE = (
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (230, 159, 0),
    (0, 0, 0),
)
GRID, AXIS, TEXT = (225, 225, 225), (60, 60, 60), (20, 20, 20)


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x, y) in data units, drawn in x order."""

    label: str
    points: tuple[tuple[float, float], ...] | list[tuple[float, float]]
    color: tuple[int, int, int] | None = None
    dashed: bool = False


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks (1, 2 or 5 x 10^k apart) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"axis range must be finite, got [{lo}, {hi}]")
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks, k = [], 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 10))
        k += 1
    if ticks[-1] < hi:
        ticks.append(round(first + k * step, 10))
    return ticks


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


def _dashed_line(draw: ImageDraw.ImageDraw, a, b, fill, width: int, dash: int = 8) -> None:
    length = math.dist(a, b)
    if length == 0:
        return
    for start in range(0, int(length), 2 * dash):
        t0, t1 = start / length, min(start + dash, length) / length
        draw.line(
            [
                (a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1),
            ],
            fill=fill,
            width=width,
        )


def line_chart(
    series: list[Series],
    path: str | Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (900, 540),
    legend_at: str = "bottom right",
) -> Path:
    """Draw ``series`` on one pair of axes and save a PNG at ``path``; returns the path.

    ``y_range``: fixed y limits (e.g. (0, 100) for a percentage), else the data's, padded to round ticks.
    ``legend_at``: "bottom right" (rising curves) or "top right" (falling ones, e.g. an error).
    """
    if legend_at not in ("bottom right", "top right"):
        raise ValueError(f"legend_at must be 'bottom right' or 'top right', not {legend_at!r}")
    points = [p for s in series for p in s.points]
    if not points:
        raise ValueError(f"{path}: nothing to plot (every series is empty)")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks = nice_ticks(min(0.0, min(xs)), max(xs))
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=14)
    width, height = size
    left, right, top, bottom = 80, 30, 50, 70
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)

    def to_px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])
        fy = (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])
        return left + fx * (width - left - right), height - bottom - fy * (height - top - bottom)

    for x in x_ticks:
        px = to_px(x, y_ticks[0])[0]
        draw.line([(px, top), (px, height - bottom)], fill=GRID)
        draw.text((px, height - bottom + 6), _label(x), fill=TEXT, font=small, anchor="ma")
    for y in y_ticks:
        py = to_px(x_ticks[0], y)[1]
        draw.line([(left, py), (width - right, py)], fill=GRID)
        draw.text((left - 8, py), _label(y), fill=TEXT, font=small, anchor="rm")
    draw.rectangle([left, top, width - right, height - bottom], outline=AXIS)
    draw.text((width / 2, 14), title, fill=TEXT, font=font, anchor="ma")
    draw.text(((left + width - right) / 2, height - 28), x_label, fill=TEXT, font=font, anchor="ma")
    label_box = Image.new("RGB", (height - top - bottom, 24), "white")
    ImageDraw.Draw(label_box).text((label_box.width / 2, 2), y_label, fill=TEXT, font=font, anchor="ma")
    image.paste(label_box.rotate(90, expand=True), (6, top))

    for k, s in enumerate(series):
        color = s.color or PALETTE[k % len(PALETTE)]
        pts = [to_px(x, y) for x, y in sorted(s.points)]
        for a, b in zip(pts, pts[1:]):
            if s.dashed:
                _dashed_line(draw, a, b, color, 3)
            else:
                draw.line([a, b], fill=color, width=3)
        for x, y in pts:  # hollow markers on dashed lines: two series of one colour stay apart
            draw.ellipse(
                [x - 4, y - 4, x + 4, y + 4], fill="white" if s.dashed else color, outline=color, width=2
            )
    # legend on a white box inside the axes, in the corner the curves leave free
    text_width = max(draw.textlength(s.label, font=small) for s in series)
    x0 = width - right - 10 - (66 + text_width)
    box_height = 22 * len(series) + 8
    y0 = height - bottom - 10 - box_height if legend_at == "bottom right" else top + 10
    draw.rectangle([x0, y0, width - right - 10, y0 + box_height], fill="white", outline=GRID)
    for k, s in enumerate(series):
        color = s.color or PALETTE[k % len(PALETTE)]
        y = y0 + 15 + 22 * k
        a, b = (x0 + 10, y), (x0 + 46, y)
        (_dashed_line(draw, a, b, color, 3, dash=6) if s.dashed else draw.line([a, b], fill=color, width=3))
        draw.text((x0 + 56, y), s.label, fill=TEXT, font=small, anchor="lm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
