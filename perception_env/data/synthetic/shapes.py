"""Shapes scenes: place coloured shapes on a canvas and draw them with PIL.

A scene is a list of :class:`ShapeObject`; its boxes are exact: every shape is
drawn so that it touches all four sides of its box, and a box
``[x1, y1, x2, y2]`` covers the pixels ``x1 .. x2 - 1`` (pixel-edge
convention, pixels of the generated image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from perception_env.data.synthetic.difficulty import Difficulty

RGB = {
    "red": (220, 40, 40),
    "green": (30, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
    "cyan": (20, 190, 200),
    "pink": (240, 110, 180),
}
BACKGROUND = (235, 235, 235)  # light grey: every palette colour stands out against it


def _normalised(vertices: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Stretch a polygon to touch all sides of the unit square (so its box is exact)."""
    xs, ys = zip(*vertices)
    x0, y0, sx, sy = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    return tuple(((x - x0) / sx, (y - y0) / sy) for x, y in vertices)


def _regular(n: int, inner: float | None = None) -> tuple[tuple[float, float], ...]:
    """A regular n-gon (or an n-point star when ``inner`` is set), first vertex up."""
    step = math.pi / n if inner else 2 * math.pi / n
    count = 2 * n if inner else n
    pts = []
    for i in range(count):
        r = inner if inner and i % 2 else 1.0
        a = -math.pi / 2 + i * step
        pts.append((r * math.cos(a), r * math.sin(a)))
    return _normalised(pts)


_T = 1 / 3  # arm width of the cross
# Polygons in the unit square; circle and square are drawn with ellipse/rectangle.
POLYGONS: dict[str, tuple[tuple[float, float], ...]] = {
    "triangle": ((0.5, 0.0), (1.0, 1.0), (0.0, 1.0)),
    "diamond": ((0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)),
    "cross": _normalised(
        [
            (_T, 0),
            (2 * _T, 0),
            (2 * _T, _T),
            (1, _T),
            (1, 2 * _T),
            (2 * _T, 2 * _T),
            (2 * _T, 1),
            (_T, 1),
            (_T, 2 * _T),
            (0, 2 * _T),
            (0, _T),
            (_T, _T),
        ]
    ),
    "star": _regular(5, inner=0.45),
    "hexagon": _regular(6),
    "pentagon": _regular(5),
}


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object: class (shape), colour and box ``(x1, y1, x2, y2)`` in pixels."""

    shape: str
    color: str
    box: tuple[int, int, int, int]

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the box, pixels; it lies inside every shape drawn here."""
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)

    @property
    def size(self) -> int:
        return self.box[2] - self.box[0]

    def as_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "box": list(self.box)}


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over the smaller box's area (catches one box hidden in another, unlike IoU)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def place_objects(
    rng: np.random.Generator, difficulty: Difficulty, attributes: list[tuple[str, str]]
) -> list[ShapeObject] | None:
    """Boxes for objects with the given ``(shape, colour)``, or ``None`` when they do not fit.

    Grid mode: distinct random cells, each object centred in its cell. Free
    mode: rejection sampling under ``difficulty.max_overlap``.
    """
    lo, hi = difficulty.object_size
    sizes = rng.integers(lo, hi + 1, size=len(attributes))
    if difficulty.grid is not None:
        cell, g = difficulty.cell_size, difficulty.grid
        cells = rng.choice(g * g, size=len(attributes), replace=False)
        out = []
        for (shape, color), c, s in zip(attributes, cells, sizes):
            x1 = int(c % g) * cell + (cell - int(s)) // 2
            y1 = int(c // g) * cell + (cell - int(s)) // 2
            out.append(ShapeObject(shape, color, (x1, y1, x1 + int(s), y1 + int(s))))
        return out
    placed: list[ShapeObject] = []
    for (shape, color), s in zip(attributes, sizes):
        s = int(s)
        for _ in range(100):
            x1, y1 = (int(v) for v in rng.integers(0, difficulty.image_size - s + 1, size=2))
            box = (x1, y1, x1 + s, y1 + s)
            if all(_overlap(box, o.box) <= difficulty.max_overlap for o in placed):
                placed.append(ShapeObject(shape, color, box))
                break
        else:
            return None
    return placed


def draw_shape(draw: ImageDraw.ImageDraw, obj: ShapeObject) -> None:
    """Draw one filled shape so that its pixels span exactly its box."""
    x1, y1, x2, y2 = obj.box
    fill = RGB[obj.color]
    w, h = x2 - x1 - 1, y2 - y1 - 1  # PIL coordinates are inclusive pixel indices
    if obj.shape == "circle":
        draw.ellipse((x1, y1, x1 + w, y1 + h), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x1, y1, x1 + w, y1 + h), fill=fill)
    else:
        draw.polygon([(x1 + u * w, y1 + v * h) for u, v in POLYGONS[obj.shape]], fill=fill)


def background(rng: np.random.Generator, difficulty: Difficulty) -> tuple[int, int, int]:
    """The light-grey background, shifted per image by up to ``background_jitter``."""
    j = difficulty.background_jitter
    shift = rng.integers(-j, j + 1, size=3) if j else np.zeros(3, dtype=int)
    return tuple(int(np.clip(c + d, 160, 255)) for c, d in zip(BACKGROUND, shift))


def add_noise(rng: np.random.Generator, image: np.ndarray, std: float) -> np.ndarray:
    """``image`` plus Gaussian pixel noise of standard deviation ``std`` (0: unchanged), as uint8."""
    if std <= 0:
        return image
    noisy = image.astype(np.float32) + rng.normal(0.0, std, size=image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, difficulty: Difficulty, objects: list[ShapeObject]) -> np.ndarray:
    """The scene as an ``[H, W, 3]`` uint8 array (read-only, so cached samples stay intact)."""
    size = difficulty.image_size
    image = Image.new("RGB", (size, size), background(rng, difficulty))
    draw = ImageDraw.Draw(image)
    # Clutter goes first, in greys only, so it never looks like (or hides) a labelled object.
    for _ in range(difficulty.clutter):
        grey = int(rng.integers(90, 190))
        x, y = (int(v) for v in rng.integers(0, size, size=2))
        if rng.random() < 0.5:
            dx, dy = (int(v) for v in rng.integers(-size // 6, size // 6 + 1, size=2))
            draw.line((x, y, x + dx, y + dy), fill=(grey,) * 3, width=1)
        else:
            r = int(rng.integers(1, 3))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(grey,) * 3)
    for obj in objects:
        draw_shape(draw, obj)
    array = add_noise(rng, np.asarray(image, dtype=np.uint8).copy(), difficulty.noise_std)
    array.flags.writeable = False
    return array
