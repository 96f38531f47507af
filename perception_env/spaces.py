"""Spaces that real observations and answers fit.

Gymnasium's ``Text`` space defaults to letters and digits, and a ``Box`` needs a
fixed shape; a perception env has images of any size and prompts/answers in
arbitrary unicode (JSON, special tokens, Chinese OCR text). These two spaces
say exactly that, and still ``sample()`` from ``self.np_random`` so
``check_env`` and vector envs work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

# Drawn by sample(): printable ASCII, a few non-ASCII letters and the Qwen box tokens'
# characters, so random answers exercise the parsers, not only [a-z0-9].
_SAMPLE_ALPHABET = tuple(chr(c) for c in range(32, 127)) + tuple("éüßçñ中文字日本語\n\t")


class UnicodeText(spaces.Space[str]):
    """Any ``str`` of at most ``max_length`` characters (any unicode code points)."""

    def __init__(self, max_length: int = 1 << 20, seed: int | np.random.Generator | None = None):
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_length = int(max_length)
        super().__init__(shape=None, dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of 0..64 characters (lengths up to ``max_length`` are valid, but short is useful)."""
        length = int(self.np_random.integers(0, min(64, self.max_length) + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in idx)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText) and other.max_length == self.max_length


class ImageSpace(spaces.Space[np.ndarray]):
    """RGB images of any size: ``uint8`` arrays of shape ``[H, W, 3]``.

    ``min_size``/``max_size`` bound height and width in pixels.
    """

    def __init__(
        self,
        min_size: int = 1,
        max_size: int = 16384,
        seed: int | np.random.Generator | None = None,
    ):
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size = int(min_size), int(max_size)
        super().__init__(shape=None, dtype=np.uint8, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        """A random noise image, each side drawn in ``[min_size, min(max_size, 256)]``."""
        hi = max(self.min_size, min(self.max_size, 256))
        h, w = self.np_random.integers(self.min_size, hi + 1, size=2)
        return self.np_random.integers(0, 256, size=(h, w, 3), dtype=np.uint8)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, np.ndarray)
            and x.dtype == np.uint8
            and x.ndim == 3
            and x.shape[2] == 3
            and self.min_size <= x.shape[0] <= self.max_size
            and self.min_size <= x.shape[1] <= self.max_size
        )

    def __repr__(self) -> str:
        return f"ImageSpace(min_size={self.min_size}, max_size={self.max_size})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, ImageSpace)
            and other.min_size == self.min_size
            and other.max_size == self.max_size
        )


def observation_space(image_size: tuple[int, int] | None, max_prompt_length: int) -> spaces.Dict:
    """``{"image": ..., "prompt": ...}``; a fixed ``(width, height)`` gives a ``Box`` image."""
    if image_size is None:
        image = ImageSpace()
    else:
        width, height = image_size
        image = spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
    return spaces.Dict({"image": image, "prompt": UnicodeText(max_prompt_length)})
