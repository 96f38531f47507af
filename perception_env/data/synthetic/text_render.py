r"""OCR: words from a small built-in vocabulary rendered with Pillow's own font.

``ImageFont.load_default(size=N)`` is a real TrueType font shipped inside
Pillow (>= 10.1), so rendering needs no font file and no network. The ground
truth is exactly what is drawn: the words of each line joined by single
spaces, the lines joined by ``"\n"``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from perception_env.data.sample import Sample
from perception_env.data.synthetic.base import SyntheticDataset
from perception_env.data.synthetic.shapes import add_noise, background

# Grouped by length; presets keep the words up to ``max_word_length`` letters.
_WORDS = """
    a
    an as at be by do go he if in is it me my no of on or so to up us we
    act add age air all and ant any arm art ask bag bed big box boy bus car cat cup day dog dry ear egg
    eye far fig fly fox fun hat hot ice ink jam key kid leg log map mix net new nut old one owl pen pig
    pot red run sea six sky sun tea ten top toy two van web wet yes zoo
    band bell bird blue boat book cake card city coat cold cook door duck fish five flag frog game gold
    hand hill home kite lamp leaf lion milk moon nest note park rain ring road rock rose salt ship shoe
    snow song star tree wind wolf yard
    apple beach bread chair cloud dance earth field glass green heart horse house juice knife light money
    music night ocean paper piano plant queen radio river robot sheep smile stone table tiger train water
    white world
    yellow animal basket bridge button camera candle carpet castle circle dinner doctor dragon flower
    forest garden guitar island jacket ladder letter market monkey orange pencil pepper planet rabbit
    silver spring square summer ticket tomato turtle window winter
    airplane building calendar computer elephant festival football hospital keyboard mountain notebook
    painting question sandwich triangle umbrella vacation
"""
VOCABULARY = tuple(_WORDS.split())


@functools.lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (cached: the page renderer asks for few sizes, often)."""
    return ImageFont.load_default(size=size)


class RenderedTextOCR(SyntheticDataset):
    r"""Read the rendered text: ``text`` = lines joined by ``"\n"``, dark text on a light page.

    Layout (pixels of the generated image): a margin of a third of the font
    size, lines ``1.3 * font_size`` apart, the block shifted by a random
    offset within the free space. A line ends early when its next word would
    not fit the page width. With ``difficulty.letter_cell`` the text is monospaced instead: one
    character centred in each square cell, the block starting at a random cell. ``meta`` has the font
    size and the text origin (pixels).
    """

    task = "ocr"
    family = "text"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.vocabulary = tuple(w for w in VOCABULARY if len(w) <= self.difficulty.max_word_length)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.difficulty.page_size  # every page is this size, whatever its text

    def draw(self, rng):
        d = self.difficulty
        width, height = d.page_size
        size = int(rng.integers(d.font_size[0], d.font_size[1] + 1))
        if d.letter_cell:
            return self._draw_in_cells(rng, size)
        f, margin, line_height = font(size), max(2, size // 3), round(1.3 * size)
        max_lines = max(1, (height - 2 * margin - size) // line_height + 1)
        n_lines = min(int(rng.integers(d.lines_per_page[0], d.lines_per_page[1] + 1)), max_lines)
        lines = self._fill_lines(rng, n_lines, fits=lambda text: f.getlength(text) <= width - 2 * margin)
        if lines is None:
            return None  # a single word wider than the page: draw again
        text_w = max(f.getlength(line) for line in lines)
        text_h = (n_lines - 1) * line_height + size
        # The whole block shifts, so position is not a constant the model could memorise.
        x0 = margin + int(rng.integers(0, max(0, int(width - 2 * margin - text_w)) + 1))
        y0 = margin + int(rng.integers(0, max(0, int(height - 2 * margin - text_h)) + 1))
        return lines, size, (x0, y0)

    def _fill_lines(self, rng, n_lines: int, fits: Callable[[str], bool]) -> list[str] | None:
        """``n_lines`` lines of random vocabulary words, each ending before the word that would make it
        not ``fits`` (a width test); None when a line's first word alone does not fit."""
        d = self.difficulty
        lines = []
        for _ in range(n_lines):
            n_words = int(rng.integers(d.words_per_line[0], d.words_per_line[1] + 1))
            words: list[str] = []
            for _ in range(max(n_words, 1)):
                word = self.vocabulary[int(rng.integers(len(self.vocabulary)))]
                if not fits(" ".join(words + [word])):
                    break
                words.append(word)
            if not words:
                return None
            lines.append(" ".join(words))
        return lines

    def _draw_in_cells(self, rng, size: int):
        """Lines of words on the page's grid of ``letter_cell`` cells; the block at a random cell."""
        d = self.difficulty
        cell = d.letter_cell
        columns, rows = d.page_size[0] // cell, d.page_size[1] // cell
        n_lines = min(int(rng.integers(d.lines_per_page[0], d.lines_per_page[1] + 1)), rows)
        lines = self._fill_lines(rng, n_lines, fits=lambda text: len(text) <= columns)
        if lines is None:
            return None  # a word longer than the row: draw again
        column = int(rng.integers(0, columns - max(map(len, lines)) + 1))
        row = int(rng.integers(0, rows - n_lines + 1))
        return lines, size, (column * cell, row * cell)

    def signature(self, content):
        return content  # text, font size and position (not the noise)

    def render(self, rng, content, sample_id):
        lines, size, (x0, y0) = content
        d = self.difficulty
        width, height = d.page_size
        image = Image.new("RGB", (width, height), background(rng, d))
        draw = ImageDraw.Draw(image)
        ink = (int(rng.integers(0, 60)),) * 3
        cell = d.letter_cell
        for i, line in enumerate(lines):
            if cell:  # each character centred in its cell ("mm": the middle of its advance and of the line)
                for j, char in enumerate(line):
                    centre = (x0 + j * cell + cell / 2, y0 + i * cell + cell / 2)
                    draw.text(centre, char, font=font(size), fill=ink, anchor="mm")
            else:
                draw.text((x0, y0 + i * round(1.3 * size)), line, font=font(size), fill=ink)
        array = add_noise(rng, np.asarray(image, dtype=np.uint8).copy(), d.noise_std)
        array.flags.writeable = False
        return Sample(
            sample_id=sample_id,
            width=width,
            height=height,
            image=array,
            text="\n".join(lines),
            meta={"font_size": size, "origin": [x0, y0], "difficulty": d.name},
        )
