"""Coordinate frames: where the numbers in a model's answer live.

Every reward in this package works in *pixels of the original image* (x right,
y down, boxes ``[x1, y1, x2, y2]``). Models speak other frames:

* Qwen2-VL writes integers in ``[0, 1000)`` relative to the image width/height
  (``relative-1000``), whatever size the processor resized the image to.
* Qwen2.5-VL writes absolute pixels of the image *as resized by its processor*
  (``resized-pixels``): ``smart_resize`` rounds both sides to multiples of 28
  while keeping the area between ``min_pixels`` and ``max_pixels``.

Getting this wrong is the classic silent bug (IoU stuck at zero), so each env
names its frame in ``info["frame"]`` and converts with :class:`CoordinateFrame`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Qwen2-VL / Qwen2.5-VL: 14-px patches merged 2x2 -> one vision token per 28x28 pixels.
QWEN_PATCH_FACTOR = 28
# The paper's limits (Yu et al. 2025; docs/paper.md): images between 3136 and 1,000,000 pixels.
DEFAULT_MIN_PIXELS = 3136
DEFAULT_MAX_PIXELS = 1_000_000


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_PATCH_FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Return ``(height, width)`` as the Qwen2-VL image processor resizes them.

    Same rule as ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``
    (a test checks the two agree); restated here because ``perception_env``
    must not import transformers/torch.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class CoordinateFrame:
    """A linear map between answer coordinates and original-image pixels.

    ``answer = pixels * (scale_x, scale_y)``; the frame's ``extent`` is the
    largest coordinate an answer may legitimately use (exclusive for
    ``relative-1000``), in answer units, as ``(x_max, y_max)``.
    """

    name: str
    image_width: int
    image_height: int
    scale_x: float
    scale_y: float
    extent: tuple[float, float]

    @classmethod
    def relative_1000(cls, width: int, height: int) -> CoordinateFrame:
        """Qwen2-VL: integers in [0, 1000) relative to the image size."""
        return cls("relative-1000", width, height, 1000.0 / width, 1000.0 / height, (1000.0, 1000.0))

    @classmethod
    def resized_pixels(
        cls,
        width: int,
        height: int,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        factor: int = QWEN_PATCH_FACTOR,
    ) -> CoordinateFrame:
        """Qwen2.5-VL: absolute pixels of the image as the processor resized it."""
        rh, rw = smart_resize(height, width, factor, min_pixels, max_pixels)
        return cls("resized-pixels", width, height, rw / width, rh / height, (float(rw), float(rh)))

    @classmethod
    def pixels(cls, width: int, height: int) -> CoordinateFrame:
        """Identity: answers already in original-image pixels."""
        return cls("pixels", width, height, 1.0, 1.0, (float(width), float(height)))

    def _scale(self, xy: np.ndarray) -> np.ndarray:
        """Per-coordinate scales for an array whose last axis alternates x, y."""
        n = xy.shape[-1]
        return np.tile([self.scale_x, self.scale_y], n // 2)

    def to_pixels(self, coords: np.ndarray) -> np.ndarray:
        """Answer units -> original pixels. Last axis: (x, y) or (x1, y1, x2, y2)."""
        coords = np.asarray(coords, dtype=np.float64)
        if coords.size == 0:
            return coords.reshape(coords.shape)
        return coords / self._scale(coords)

    def from_pixels(self, coords: np.ndarray) -> np.ndarray:
        """Original pixels -> answer units (floats; round when writing text)."""
        coords = np.asarray(coords, dtype=np.float64)
        if coords.size == 0:
            return coords.reshape(coords.shape)
        return coords * self._scale(coords)

    def describe(self) -> dict:
        """A JSON-friendly description for ``info["frame"]``."""
        return {
            "name": self.name,
            "image_size": [self.image_width, self.image_height],
            "answer_extent": list(self.extent),
            "answer_units_per_pixel": [self.scale_x, self.scale_y],
        }
