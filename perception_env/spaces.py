"""Spaces that real observations and answers fit.

Gymnasium's ``Text`` space defaults to letters and digits, and a ``Box`` needs a
fixed shape; a perception env has images of any size and prompts/answers in
arbitrary unicode (JSON, special tokens, Chinese OCR text). These two spaces
say exactly that, and still ``sample()`` from ``self.np_random`` so
``check_env`` and vector envs work.

Both share memory with an ``AsyncVectorEnv`` (its default, ``shared_memory=True``): each env of the vector
has a fixed slot, ``ImageSpace.shared_memory_pixels`` pixels (default 2048 x 2048) or ``UnicodeText.max_length``
characters, with the size of what it holds beside it. A larger image fails naming the fix
(``vector_kwargs={"shared_memory": False}``, or a fixed ``image_size``).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

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


# Pixels of the largest image an AsyncVectorEnv env shares by default: 12 MiB of RGB per env, more than
# COCO's 640 x 640 and the processor's default max_pixels (1,000,000).
SHARED_MEMORY_PIXELS = 2048 * 2048


class ImageSpace(spaces.Space[np.ndarray]):
    """RGB images of any size: ``uint8`` arrays of shape ``[H, W, 3]``.

    ``min_size``/``max_size`` bound height and width in pixels. ``shared_memory_pixels``: the largest
    image (``H * W``) an ``AsyncVectorEnv`` passes through shared memory (the module docstring says how).
    """

    def __init__(
        self,
        min_size: int = 1,
        max_size: int = 16384,
        seed: int | np.random.Generator | None = None,
        shared_memory_pixels: int = SHARED_MEMORY_PIXELS,
    ):
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        if shared_memory_pixels < 1:
            raise ValueError(f"shared_memory_pixels must be positive, got {shared_memory_pixels}")
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.shared_memory_pixels = int(shared_memory_pixels)
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


# ------------------------------------------------------------------ shared memory of AsyncVectorEnv
# Each space's memory is a pair of multiprocessing arrays: the size of what each env's slot holds
# ([n] characters, or [n, 2] image height and width) and the slots themselves ([n, capacity]).


class _SharedBatch(Sequence):
    """The ``n`` values in shared memory, read when accessed: ``AsyncVectorEnv`` reads its observations once
    and returns ``deepcopy`` of them after each step (its ``copy=True``), which reads them now, as a tuple
    (what a vector env without shared memory returns)."""

    def __init__(self, sizes: Any, slots: Any, n: int):
        self._sizes, self._slots, self._n = sizes, slots, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not -self._n <= index < self._n:
            raise IndexError(f"index {index} out of range for {self._n} envs")
        return self._read(index % self._n)

    def __iter__(self) -> Iterator[Any]:
        return (self._read(i) for i in range(self._n))

    def __deepcopy__(self, memo: dict) -> tuple:
        return tuple(copy.deepcopy(value, memo) for value in self)

    def __repr__(self) -> str:
        return repr(tuple(self))

    def _read(self, index: int) -> Any:
        raise NotImplementedError


class _SharedImages(_SharedBatch):
    def _read(self, index: int) -> np.ndarray:
        height, width = np.frombuffer(self._sizes.get_obj(), dtype=np.int64)[2 * index : 2 * index + 2]
        slots = np.frombuffer(self._slots.get_obj(), dtype=np.uint8).reshape(self._n, -1)
        return slots[index, : height * width * 3].reshape(height, width, 3)  # a view, as a Box's


class _SharedTexts(_SharedBatch):
    def _read(self, index: int) -> str:
        length = int(np.frombuffer(self._sizes.get_obj(), dtype=np.int64)[index])
        codes = np.frombuffer(self._slots.get_obj(), dtype=np.uint32).reshape(self._n, -1)
        return codes[index, :length].tobytes().decode("utf-32-le", "surrogatepass")


@create_shared_memory.register(ImageSpace)
def _create_image_memory(space: ImageSpace, n: int = 1, ctx: ModuleType = mp) -> tuple[Any, Any]:
    return ctx.Array("q", 2 * n), ctx.Array("B", n * space.shared_memory_pixels * 3)


@read_from_shared_memory.register(ImageSpace)
def _read_images(space: ImageSpace, memory: tuple[Any, Any], n: int = 1) -> _SharedImages:
    return _SharedImages(*memory, n)


@write_to_shared_memory.register(ImageSpace)
def _write_image(space: ImageSpace, index: int, value: np.ndarray, memory: tuple[Any, Any]) -> None:
    image = np.asarray(value, dtype=np.uint8)
    height, width = image.shape[:2]
    if height * width > space.shared_memory_pixels:
        raise ValueError(
            f"an image of {width}x{height} pixels does not fit the {space.shared_memory_pixels} pixels an "
            "AsyncVectorEnv shares per env: pass vector_kwargs={'shared_memory': False}, or a fixed "
            "image_size=(width, height) to the env"
        )
    sizes, slots = memory
    np.frombuffer(sizes.get_obj(), dtype=np.int64)[2 * index : 2 * index + 2] = (height, width)
    slot = np.frombuffer(slots.get_obj(), dtype=np.uint8).reshape(-1, space.shared_memory_pixels * 3)[index]
    slot[: image.size] = image.reshape(-1)


@create_shared_memory.register(UnicodeText)
def _create_text_memory(space: UnicodeText, n: int = 1, ctx: ModuleType = mp) -> tuple[Any, Any]:
    return ctx.Array("q", n), ctx.Array("I", n * space.max_length)


@read_from_shared_memory.register(UnicodeText)
def _read_texts(space: UnicodeText, memory: tuple[Any, Any], n: int = 1) -> _SharedTexts:
    return _SharedTexts(*memory, n)


@write_to_shared_memory.register(UnicodeText)
def _write_text(space: UnicodeText, index: int, value: str, memory: tuple[Any, Any]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{space} holds strings, not {type(value).__name__}: {value!r:.60}")
    if len(value) > space.max_length:
        raise ValueError(f"a text of {len(value)} characters does not fit {space}")
    # one code point per uint32 (a lone surrogate too: the env never refuses a string)
    codes = np.frombuffer(value.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    sizes, slots = memory
    np.frombuffer(sizes.get_obj(), dtype=np.int64)[index] = len(codes)
    np.frombuffer(slots.get_obj(), dtype=np.uint32).reshape(-1, space.max_length)[index, : len(codes)] = codes
