"""How hard a built-in synthetic task is: one dataclass, three named presets.

All sizes are pixels of the generated image. The presets are chosen by name
(``"easy"``, ``"medium"``, ``"hard"``) wherever a ``difficulty`` is accepted;
pass a :class:`Difficulty` (e.g. ``dataclasses.replace(EASY, max_overlap=0.1)``)
for anything in between.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Every shape and colour the generator knows, in the order presets take them
# (a preset with k classes uses the first k, so easy classes are a subset of hard ones).
ALL_SHAPES = ("circle", "square", "triangle", "cross", "star", "diamond", "hexagon", "pentagon")
ALL_COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the synthetic generators (shapes scenes and rendered text).

    Shapes (detection, counting, grounding):

    * ``image_size``: side of the square image, pixels.
    * ``grid``: cells per side for grid-aligned placement (at most one object
      per cell, centred in it), or ``None`` for free placement anywhere.
    * ``num_objects``: inclusive range of objects per image.
    * ``object_size``: inclusive range of an object's bounding-box side, pixels.
    * ``max_overlap``: largest allowed ``intersection / area of the smaller box``
      between two objects (0 = never touch; later objects are drawn on top).
    * ``shapes`` / ``colors``: the classes and colours used; ``shapes`` are the
      detection categories in id order.
    * ``background_jitter``: per-image random shift (+-, per channel) of the grey background.
    * ``noise_std``: std of Gaussian pixel noise added at the end (0..255 scale).
    * ``clutter``: number of grey lines/dots drawn under the objects (never labelled).
    * ``count_range``: inclusive range of the asked count in counting (0 = the
      asked class is absent); the count is drawn first, uniformly, so the
      answers are balanced.
    * ``count_query``: what counting asks for: ``"shape"`` (the objects of one
      shape class among others: perception of shape) or ``"all"`` (every
      object, "How many objects ...": only presence, the easiest task there is;
      0 is an empty image).

    Rendered text (OCR):

    * ``page_size``: ``(width, height)`` of the text image, pixels.
    * ``font_size``: inclusive range, pixels (Pillow's built-in TrueType font).
    * ``words_per_line`` / ``lines_per_page``: inclusive ranges (a line ends
      early when the next word would not fit the page width).
    * ``max_word_length``: longest vocabulary word used, characters.
    * ``letter_cell``: ``None`` for proportional text at any pixel offset; a side in pixels for a
      monospaced layout on a grid of square cells, one character (or space) centred in each cell and
      the block placed at a random cell. At 28 (the vision token's 28x28 pixels after Qwen's 2x2
      merge) each character is one token, as ``grid`` puts one object in each token: the simplest
      reading, the same question.
    """

    name: str = "custom"
    image_size: int = 112
    grid: int | None = 4
    num_objects: tuple[int, int] = (1, 4)
    object_size: tuple[int, int] = (22, 26)
    max_overlap: float = 0.0
    shapes: tuple[str, ...] = ALL_SHAPES[:3]
    colors: tuple[str, ...] = ALL_COLORS[:3]
    background_jitter: int = 0
    noise_std: float = 0.0
    clutter: int = 0
    count_range: tuple[int, int] = (0, 4)
    count_query: str = "shape"
    page_size: tuple[int, int] = (112, 56)
    font_size: tuple[int, int] = (24, 24)
    words_per_line: tuple[int, int] = (1, 1)
    lines_per_page: tuple[int, int] = (1, 1)
    max_word_length: int = 4
    letter_cell: int | None = None

    # C901 kept: independent checks of the fields, each raising, read top to bottom
    def __post_init__(self) -> None:  # noqa: C901
        for key in (
            "num_objects",
            "object_size",
            "count_range",
            "font_size",
            "words_per_line",
            "lines_per_page",
        ):
            value = getattr(self, key)
            if not 0 <= value[0] <= value[1]:
                raise ValueError(f"Difficulty.{key} must be a range (lo, hi) with 0 <= lo <= hi, got {value}")
        if self.num_objects[1] < 1:
            raise ValueError("Difficulty.num_objects must allow at least one object")
        if self.object_size[0] < 4 or self.object_size[1] > self.image_size:
            raise ValueError(f"Difficulty.object_size {self.object_size} must lie in [4, image_size]")
        if self.grid is not None:
            cell = self.image_size // self.grid
            if self.object_size[1] > cell:
                raise ValueError(f"objects up to {self.object_size[1]} px do not fit {cell}-px grid cells")
            if self.num_objects[1] > self.grid**2:
                raise ValueError(f"{self.num_objects[1]} objects do not fit a {self.grid}x{self.grid} grid")
        unknown = set(self.shapes) - set(ALL_SHAPES) or set(self.colors) - set(ALL_COLORS)
        if unknown:
            raise ValueError(f"unknown shapes/colours {sorted(unknown)}; known: {ALL_SHAPES}, {ALL_COLORS}")
        if self.count_query not in ("shape", "all"):
            raise ValueError(f"Difficulty.count_query must be 'shape' or 'all', got {self.count_query!r}")
        if not self.shapes or not self.colors:
            raise ValueError("need at least one shape class and one colour")
        if self.letter_cell is not None:
            columns, rows = (side // max(self.letter_cell, 1) for side in self.page_size)
            if self.letter_cell < self.font_size[1] or not columns or not rows:
                raise ValueError(
                    f"Difficulty.letter_cell {self.letter_cell} must hold the largest font "
                    f"({self.font_size[1]} px) and fit the page {self.page_size}"
                )
        if not 0.0 <= self.max_overlap < 1.0:
            raise ValueError(f"Difficulty.max_overlap must be in [0, 1), got {self.max_overlap}")

    @property
    def cell_size(self) -> int | None:
        """Side of a grid cell in pixels (``None`` for free placement)."""
        return None if self.grid is None else self.image_size // self.grid


EASY = Difficulty(name="easy")
"""Learnable by a ~0.2M-parameter Qwen2-VL on a CPU in minutes (docs/learning-on-a-cpu.md).

112x112 image, a 4x4 grid of 28-px cells (Qwen's 28-px vision tokens: one
object ~ one token), at most one object per cell, each 22-26 px and centred in
its cell; 1-4 objects; 3 shapes (circle, square, triangle) x 3 colours (red,
green, blue); plain light-grey background, no noise, no clutter. Counting asks
for 0-4 objects. OCR: one word of at most 4 letters in a 24-px font on a
112x56 image.
"""

MEDIUM = Difficulty(
    name="medium",
    image_size=224,
    grid=None,
    num_objects=(2, 8),
    object_size=(24, 56),
    max_overlap=0.15,
    shapes=ALL_SHAPES[:5],
    colors=ALL_COLORS[:5],
    background_jitter=25,
    count_range=(0, 6),
    page_size=(448, 112),
    font_size=(18, 24),
    words_per_line=(2, 5),
    lines_per_page=(1, 3),
    max_word_length=8,
)
"""224x224, free placement, 2-8 objects of 24-56 px that may overlap a little
(<= 15% of the smaller box), 5 shapes x 5 colours, background tint varies.
Counting asks for 0-6. OCR: 1-3 lines of 2-5 words (<= 8 letters), 18-24 px
font, 448x112 image."""

HARD = Difficulty(
    name="hard",
    image_size=448,
    grid=None,
    num_objects=(8, 24),
    object_size=(14, 64),
    max_overlap=0.4,
    shapes=ALL_SHAPES,
    colors=ALL_COLORS,
    background_jitter=60,
    noise_std=8.0,
    clutter=40,
    count_range=(0, 12),
    page_size=(672, 448),
    font_size=(14, 20),
    words_per_line=(4, 10),
    lines_per_page=(6, 14),
    max_word_length=12,
)
"""448x448, 8-24 small objects (14-64 px) overlapping up to 40% of the smaller
box, 8 shapes x 8 colours, strong background tint, pixel noise and 40 grey
clutter marks: meant to challenge a real 2B model. Counting asks for 0-12.
OCR: a 672x448 page of 6-14 lines of 4-10 words, 14-20 px font, noise."""

PRESETS: dict[str, Difficulty] = {d.name: d for d in (EASY, MEDIUM, HARD)}


def get_difficulty(difficulty: str | Difficulty | Mapping[str, Any]) -> Difficulty:
    """A preset by name, the given :class:`Difficulty` unchanged, or a mapping of overrides on a preset.

    The mapping form is what JSON can carry (``--env-kwargs``, configs, checkpoints):
    ``{"base": "easy", "shapes": ["square"]}`` is ``dataclasses.replace(EASY, shapes=("square",))``.
    """
    if isinstance(difficulty, Difficulty):
        return difficulty
    if isinstance(difficulty, Mapping):
        overrides = dict(difficulty)
        base = get_difficulty(overrides.pop("base", "easy"))
        known = {f.name for f in dataclasses.fields(Difficulty)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown difficulty field(s) {unknown}; known: {sorted(known)}")
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        return dataclasses.replace(base, **{"name": f"{base.name}+custom", **overrides})
    try:
        return PRESETS[difficulty]
    except (KeyError, TypeError):
        raise ValueError(f"unknown difficulty {difficulty!r}; presets: {sorted(PRESETS)}") from None
