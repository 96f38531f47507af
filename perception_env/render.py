"""Drawing a sample and an answer's predictions, so a person can look rather than read.

Colours: targets green; predictions matched to a target blue (solid) with a
thin line to their target; unmatched predictions red; target points as green
dots, predicted points as blue/red crosses. Small images are upscaled so
labels stay legible.

An env's frames (``env.render()``) are all of one size, which video recorders (Gymnasium's ``RecordVideo``)
need: each image is fitted into the env's panel (:func:`panel_size`) and centred on grey, and the text band
under it always has room for the most lines the task can write (:func:`band_lines`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from perception_env.data.sample import Sample

TARGET = (40, 200, 60)
MATCHED = (40, 110, 255)
UNMATCHED = (230, 40, 40)
PADDING = (128, 128, 128)  # around an image that does not fill its panel
MIN_RENDER_SIDE = 448  # px; tiny synthetic images (112 px) are drawn 4x larger
# px (width, height): the panel of data whose images differ in size (real data); COCO's longest side
VARIED_SIZES_PANEL = (640, 640)
TEXT_LINES = 6  # lines of the text read and of the truth written under an OCR image, each
LINE_HEIGHT = 18  # px, of the text band


def panel_size(image_size: tuple[int, int] | None) -> tuple[int, int]:
    """``(width, height)`` in pixels of the image in every frame of an env whose images are all
    ``image_size`` (``(width, height)``, upscaled as :func:`render_sample` upscales), or whose sizes differ
    (``None``: :data:`VARIED_SIZES_PANEL`). Both sides even: video encoders (H.264, 4:2:0) need that."""
    if image_size is None:
        return VARIED_SIZES_PANEL
    width, height = image_size
    scale = max(1.0, MIN_RENDER_SIDE / max(width, height))
    return tuple(2 * -(-round(side * scale) // 2) for side in (width, height))  # rounded up to even


def band_lines(text: bool) -> int:
    """The most lines written under the image: the query, the answer, the reward and why, and with ``text``
    up to :data:`TEXT_LINES` of the text read and of the truth."""
    return 4 + (2 * TEXT_LINES if text else 0)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _text_band(width: int, lines: list[str], font, height_in_lines: int | None = None) -> Image.Image:
    band = Image.new(
        "RGB", (width, 6 + LINE_HEIGHT * (height_in_lines or max(1, len(lines)))), (255, 255, 255)
    )
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((4, 3 + LINE_HEIGHT * i), line, fill=(0, 0, 0), font=font)
    return band


def render_sample(
    sample: Sample,
    result=None,
    *,
    labels: bool = False,
    points: bool = False,
    text: bool = False,
    answer: str | None = None,
    panel: tuple[int, int] | None = None,
) -> np.ndarray:
    """``[H', W', 3]`` uint8: the image, its targets and (if given) a RewardResult's predictions.

    ``labels``: write the class of each box (detection); ``points``: draw target points and predicted points,
    matched point to point (counting); ``text``: the text read and the truth under the image (OCR);
    ``answer``: the answer as written (a number, a transcription: what the boxes alone do not show).
    ``panel``: ``(width, height)``: a frame of fixed size, ``[height + band, width, 3]`` (the image fitted and
    centred in the panel, a band of :func:`band_lines` lines whatever is written); None: the image's own
    shape, upscaled to :data:`MIN_RENDER_SIDE`, and as many lines as are written.
    """
    image, scale = _scaled_image(sample, panel)
    painter = _Painter(
        ImageDraw.Draw(image), scale, _font(max(10, int(11 * min(scale, 2)))), max(1, round(scale))
    )
    painter.targets(sample, labels, points)
    if result is not None:
        painter.predictions(sample, result, labels, points)
    lines = _caption(sample, result, answer, text)
    if panel is not None:
        framed = Image.new("RGB", panel, PADDING)
        framed.paste(image, ((panel[0] - image.width) // 2, (panel[1] - image.height) // 2))
        image = framed
    if lines or panel is not None:
        band = _text_band(image.width, lines, _font(12), band_lines(text) if panel is not None else None)
        canvas = Image.new("RGB", (image.width, image.height + band.height), (255, 255, 255))
        canvas.paste(image, (0, 0))
        canvas.paste(band, (0, image.height))
        image = canvas
    return np.asarray(image, dtype=np.uint8)


def _scaled_image(sample: Sample, panel: tuple[int, int] | None) -> tuple[Image.Image, float]:
    """The sample's image at the scale it is drawn (fitted into ``panel``, or upscaled to
    :data:`MIN_RENDER_SIDE`), and that scale."""
    image = Image.fromarray(sample.load_image())
    if panel is None:
        scale = max(1.0, MIN_RENDER_SIDE / max(sample.width, sample.height))
    else:
        scale = min(panel[0] / sample.width, panel[1] / sample.height)
    if scale != 1:
        size = (max(1, round(sample.width * scale)), max(1, round(sample.height * scale)))  # <= panel
        # upscaled pixel for pixel (tiny synthetic images stay sharp); large photos averaged down
        image = image.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    return image, scale


@dataclass
class _Painter:
    """Draws boxes and points given in the original image's pixels onto the image scaled by ``scale``."""

    draw: ImageDraw.ImageDraw
    scale: float
    font: ImageFont.ImageFont
    width: int  # px: the thinnest outline

    def box(self, xyxy, colour, label=None, line: int = 1) -> None:
        x1, y1, x2, y2 = (float(v) * self.scale for v in xyxy)
        self.draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=colour, width=line)
        if label:
            self.draw.text((min(x1, x2) + 2, min(y1, y2) + 1), str(label), fill=colour, font=self.font)

    def dot(self, xy, colour, r: int = 4) -> None:
        x, y = float(xy[0]) * self.scale, float(xy[1]) * self.scale
        self.draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)

    def cross(self, xy, colour, r: int = 5) -> None:
        x, y = float(xy[0]) * self.scale, float(xy[1]) * self.scale
        self.draw.line([x - r, y - r, x + r, y + r], fill=colour, width=2)
        self.draw.line([x - r, y + r, x + r, y - r], fill=colour, width=2)

    def link(self, a, b) -> None:
        """A thin line from a matched prediction ``a`` to its target ``b`` (points)."""
        s = self.scale
        self.draw.line(
            [float(a[0]) * s, float(a[1]) * s, float(b[0]) * s, float(b[1]) * s], fill=MATCHED, width=1
        )

    def targets(self, sample: Sample, labels: bool, points: bool) -> None:
        target_labels = list(sample.labels) + [None] * (len(sample.boxes) - len(sample.labels))
        for b, lab in zip(np.asarray(sample.boxes).reshape(-1, 4), target_labels):
            self.box(
                b, TARGET, lab if labels else None, line=self.width + 3
            )  # wide: shows around predictions
        if points:
            for p in np.asarray(sample.points).reshape(-1, 2):
                self.dot(p, TARGET)

    def predictions(self, sample: Sample, result, labels: bool, points: bool) -> None:
        """``result``'s boxes (and with ``points`` its points), coloured by whether they matched a target, and
        a line from each matched one to its target."""
        parsed = result.parsed
        matched = {m["pred"]: m for m in result.matching if m.get("pred") is not None}
        pred_boxes = np.asarray(parsed.boxes).reshape(-1, 4)
        pred_labels = list(parsed.labels) + [None] * max(0, len(pred_boxes) - len(parsed.labels))
        for i, b in enumerate(pred_boxes):
            m = matched.get(i)
            colour = MATCHED if m is not None and m.get("tp", True) else UNMATCHED
            self.box(b, colour, pred_labels[i] if labels else None, line=self.width + 1)
        pred_points = np.asarray(parsed.points).reshape(-1, 2)
        use_points = points and len(np.asarray(sample.points).reshape(-1, 2))
        if use_points:
            for i, p in enumerate(pred_points):
                self.cross(p, MATCHED if i in matched else UNMATCHED)
        for a, b in _match_links(sample, matched, pred_boxes, pred_points if use_points else None):
            self.link(a, b)


def _match_links(sample: Sample, matched: dict, pred_boxes: np.ndarray, pred_points: np.ndarray | None):
    """``(prediction, target)`` points of each matched pair: the points themselves when ``pred_points`` is
    given and both exist, else the boxes' centres; a pair whose index is out of range is left out."""
    targets = np.asarray(sample.boxes).reshape(-1, 4)
    target_points = np.asarray(sample.points).reshape(-1, 2)
    for i, m in matched.items():
        t = m.get("target")
        if t is None:
            continue
        if pred_points is not None and i < len(pred_points) and t < len(target_points):
            yield pred_points[i], target_points[t]
        elif i < len(pred_boxes) and t < len(targets):
            yield (pred_boxes[i][:2] + pred_boxes[i][2:]) / 2, (targets[t][:2] + targets[t][2:]) / 2


def _caption(sample: Sample, result, answer: str | None, text: bool) -> list[str]:
    """The lines under the image: the query; the answer, its reward and why; the text read and the truth."""
    lines = [f"query: {sample.query}"] if sample.query else []
    if result is not None:
        if answer is not None:
            lines.append(f"answer: {answer!r}"[:120])
        lines.append(f"reward {result.reward:.3f} / {result.max_reward:g}")
        if result.reason:
            lines.append(f"why: {result.reason}"[:120])
        if text and result.parsed.text is not None:
            lines += [f"read: {line}"[:120] for line in result.parsed.text.splitlines()[:TEXT_LINES]]
    if text:
        lines += [f"truth: {line}"[:120] for line in sample.text.splitlines()[:TEXT_LINES]]
    return lines
