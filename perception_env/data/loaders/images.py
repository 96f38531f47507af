"""Image files: a cheap header check at load time, the pixels at reset; every error names file and entry.

At load, :func:`read_header` opens the file lazily (PIL reads the header, not
the pixels): an unreadable file, a text file named ``.jpg``, a decompression
bomb (``PIL.Image.MAX_IMAGE_PIXELS``) or a mode without a defined display
range fails there, and the declared width/height is checked against the file
(:func:`annotation_frame`). A truncated file is found only by decoding it, at
reset (:func:`load_rgb`), which names the image and the dataset entry too.

Pixels become ``[H, W, 3]`` uint8 RGB from every PIL mode (:func:`to_rgb`):

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``...): PIL's ``convert("RGB")``;
* 16-bit grey (``I;16*``; ``I``, as PIL opens a 16-bit PGM): scaled ``round(v * 255 / 65535)``,
  not clipped at 255;
* transparency (``RGBA``, ``LA``, ``PA``, ``RGBa``, or a ``tRNS`` colour): composited on white,
  as a viewer or a browser shows it on a page;
* ``F`` (32-bit float) has no defined range and is refused.

EXIF orientation (tag 274): cameras store a portrait photo as landscape pixels
plus a tag saying how to turn it upright. Whether annotations are in the
stored frame or the upright one depends on the tool that drew them;
:func:`annotation_frame` decides per image from the declared size, and
:data:`EXIF_POLICIES` names the choices (see docs/real-data.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from perception_env.data.loaders.errors import DatasetFormatError, Where

if TYPE_CHECKING:
    from PIL import Image as PILImage

ORIENTATION_TAG = 0x0112  # EXIF "Orientation"
TRANSPOSING = frozenset({5, 6, 7, 8})  # orientations that swap width and height
# "auto": the declared size decides (a non-square image turned by 90 degrees fits one frame only), a tie goes
# to the loader's convention; "apply": always turn upright; "ignore": always the stored pixels.
EXIF_POLICIES = ("auto", "apply", "ignore")
UNSUPPORTED_MODES = {"F": "32-bit float pixels have no defined display range; save the image as 8 or 16 bit"}
WHITE = (255, 255, 255, 255)


def exif_policy(value: str) -> str:
    """``value`` if it is one of :data:`EXIF_POLICIES`, else a ValueError naming the option."""
    if value not in EXIF_POLICIES:
        raise ValueError(f"exif_orientation must be one of {EXIF_POLICIES}, got {value!r}")
    return value


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises on a bad file: OSError (truncated, unidentified), SyntaxError (broken PNG), ..."""
    from PIL import Image

    errors = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)
    return (*errors, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says: stored size in pixels, PIL mode, EXIF orientation (1..8; 1 = none)."""

    width: int
    height: int
    mode: str
    orientation: int = 1

    @property
    def stored_size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def upright_size(self) -> tuple[int, int]:
        """``(width, height)`` once turned upright by the EXIF orientation."""
        return (self.height, self.width) if self.orientation in TRANSPOSING else (self.width, self.height)


def _orientation(im: PILImage.Image) -> int:
    from PIL import PngImagePlugin

    # PIL's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixels; the header
    # check stays cheap by reading only one that comes before them (where the PNG spec puts it).
    if isinstance(im, PngImagePlugin.PngImageFile) and "exif" not in im.info:
        return 1
    value = im.getexif().get(ORIENTATION_TAG, 1)
    return value if value in range(1, 9) else 1  # other values: exif_transpose leaves the image as is


def _bomb_hint(error: BaseException) -> str:
    from PIL import Image

    if isinstance(error, Image.DecompressionBombError):
        return f" (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}; raise it if the image is genuine)"
    return ""


def read_header(path: Path, where: Where) -> ImageHeader:
    """The header of ``path`` without decoding its pixels; a bad file raises naming ``where``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            header = ImageHeader(im.width, im.height, im.mode, _orientation(im))
    except _decode_errors() as e:
        raise where.error(f"cannot read image {path}: {e}{_bomb_hint(e)}") from None
    if header.mode in UNSUPPORTED_MODES:
        raise where.error(f"image {path} has mode {header.mode}: {UNSUPPORTED_MODES[header.mode]}")
    if header.width <= 0 or header.height <= 0:
        raise where.error(f"image {path} has size {header.width}x{header.height}")
    return header


def annotation_frame(
    path: Path,
    header: ImageHeader,
    declared: tuple[int, int] | None,
    where: Where,
    *,
    exif: str = "auto",
    upright_on_tie: bool,
) -> tuple[int, int, bool]:
    """``(width, height, exif_transpose)``: the frame the annotations are in, and whether to turn the pixels.

    ``declared``: the size the annotation file gives (None: use the chosen frame's own size). With
    ``exif="auto"`` a frame whose size is the declared one is chosen; when both fit (no turn by 90
    degrees, or a square image) ``upright_on_tie`` decides: the convention of the tools that
    annotated this kind of data. A declared size that fits no allowed frame raises naming ``where``.
    """
    exif_policy(exif)
    if header.orientation == 1:
        allowed = [False]
    elif exif == "auto":
        allowed = [upright_on_tie, not upright_on_tie]
    else:
        allowed = [exif == "apply"]
    size = {False: header.stored_size, True: header.upright_size}
    if declared is None:
        return (*size[allowed[0]], allowed[0])
    fitting = [upright for upright in allowed if size[upright] == tuple(declared)]
    if not fitting:
        upright_w, upright_h = header.upright_size
        turned = (
            f"; {upright_w}x{upright_h} upright by its EXIF orientation {header.orientation}"
            f" (exif_orientation={exif!r})"
            if header.orientation != 1
            else ""
        )
        raise where.error(
            f"declared size {declared[0]}x{declared[1]} differs from the image {path}: "
            f"{header.width}x{header.height} stored{turned}"
        )
    return (*size[fitting[0]], fitting[0])


def to_rgb(im: PILImage.Image) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from any PIL mode (see the module docstring for the rules)."""
    from PIL import Image

    if im.mode in UNSUPPORTED_MODES:
        raise ValueError(f"mode {im.mode}: {UNSUPPORTED_MODES[im.mode]}")
    if im.mode == "I" or im.mode.startswith("I;16"):
        im = _sixteen_bit_to_8(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im = Image.alpha_composite(Image.new("RGBA", im.size, WHITE), im.convert("RGBA"))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _sixteen_bit_to_8(im: PILImage.Image) -> PILImage.Image:
    """16-bit grey -> ``L`` (``LA`` when a tRNS value marks transparent pixels), 0..65535 -> 0..255."""
    from PIL import Image

    values = np.asarray(im).astype(np.int64)  # [H, W]; "I;16B" arrives big-endian, "I" as int32
    grey = np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
    if "transparency" in im.info:
        alpha = np.where(values == im.info["transparency"], 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1))  # [H, W, 2] -> "LA"
    return Image.fromarray(grey)


def load_rgb(path: str | Path, *, exif_transpose: bool, size: tuple[int, int], entry: str) -> np.ndarray:
    """Decode ``path`` to ``[H, W, 3]`` uint8 (turned upright first if ``exif_transpose``).

    ``size`` is ``(width, height)`` the annotations are in; any failure, or pixels of another size,
    raises :class:`DatasetFormatError` naming the file and ``entry``.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} ({entry})")
    try:
        with Image.open(path) as im:
            rgb = to_rgb(ImageOps.exif_transpose(im) if exif_transpose else im)
    except _decode_errors() as e:
        raise DatasetFormatError(path, entry, f"cannot decode image: {e}{_bomb_hint(e)}") from e
    if rgb.shape[:2] != (size[1], size[0]):
        raise DatasetFormatError(
            path,
            entry,
            f"decoded {rgb.shape[1]}x{rgb.shape[0]} pixels, but the annotations are in a {size[0]}x{size[1]} "
            f"frame (exif_transpose={exif_transpose}; the file changed since loading?)",
        )
    return rgb
