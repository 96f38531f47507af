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
    image = Image.fromarray(sample.load_image())
    if panel is None:
        scale = max(1.0, MIN_RENDER_SIDE / max(sample.width, sample.height))
    else:
        scale = min(panel[0] / sample.width, panel[1] / sample.height)
    if scale != 1:
        size = (max(1, round(sample.width * scale)), max(1, round(sample.height * scale)))  # <= panel
        # upscaled pixel for pixel (tiny synthetic images stay sharp); large photos averaged down
        image = image.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    font = _font(max(10, int(11 * min(scale, 2))))
    width = max(1, round(scale))

    def box(xyxy, colour, label=None, line=width):
        x1, y1, x2, y2 = (float(v) * scale for v in xyxy)
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=colour, width=line)
        if label:
            draw.text((min(x1, x2) + 2, min(y1, y2) + 1), str(label), fill=colour, font=font)

    def dot(xy, colour, r=4):
        x, y = float(xy[0]) * scale, float(xy[1]) * scale
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)

    def cross(xy, colour, r=5):
        x, y = float(xy[0]) * scale, float(xy[1]) * scale
        draw.line([x - r, y - r, x + r, y + r], fill=colour, width=2)
        draw.line([x - r, y + r, x + r, y - r], fill=colour, width=2)

    target_labels = list(sample.labels) + [None] * (len(sample.boxes) - len(sample.labels))
    for b, lab in zip(np.asarray(sample.boxes).reshape(-1, 4), target_labels):
        box(b, TARGET, lab if labels else None, line=width + 3)  # wide: shows around predictions
    if points:
        for p in np.asarray(sample.points).reshape(-1, 2):
            dot(p, TARGET)

    lines = []
    if sample.query:
        lines.append(f"query: {sample.query}")
    if result is not None:
        parsed = result.parsed
        matched = {m["pred"]: m for m in result.matching if m.get("pred") is not None}
        pred_boxes = np.asarray(parsed.boxes).reshape(-1, 4)
        pred_points = np.asarray(parsed.points).reshape(-1, 2)
        pred_labels = list(parsed.labels) + [None] * max(0, len(pred_boxes) - len(parsed.labels))
        targets = np.asarray(sample.boxes).reshape(-1, 4)
        target_points = np.asarray(sample.points).reshape(-1, 2)
        use_points = points and len(target_points)
        for i in range(len(pred_boxes)):
            m = matched.get(i)
            colour = MATCHED if m is not None and m.get("tp", True) else UNMATCHED
            box(pred_boxes[i], colour, pred_labels[i] if labels else None, line=width + 1)
        if use_points:
            for i, p in enumerate(pred_points):
                m = matched.get(i)
                cross(p, MATCHED if m is not None else UNMATCHED)
        for i, m in matched.items():  # a line from each matched prediction to its target
            t = m.get("target")
            if t is None:
                continue
            if use_points and i < len(pred_points) and t < len(target_points):
                a, b = pred_points[i], target_points[t]
            elif i < len(pred_boxes) and t < len(targets):
                a = (pred_boxes[i][:2] + pred_boxes[i][2:]) / 2
                b = (targets[t][:2] + targets[t][2:]) / 2
            else:
                continue
            draw.line(
                [float(a[0]) * scale, float(a[1]) * scale, float(b[0]) * scale, float(b[1]) * scale],
                fill=MATCHED,
                width=1,
            )
        if answer is not None:
            lines.append(f"answer: {answer!r}"[:120])
        lines.append(f"reward {result.reward:.3f} / {result.max_reward:g}")
        if result.reason:
            lines.append(f"why: {result.reason}"[:120])
        if text and parsed.text is not None:
            lines += [f"read: {line}"[:120] for line in parsed.text.splitlines()[:TEXT_LINES]]
    if text:
        lines += [f"truth: {line}"[:120] for line in sample.text.splitlines()[:TEXT_LINES]]
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
