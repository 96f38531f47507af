"""Resizing a sample to a fixed observation size, targets included."""

from __future__ import annotations

import dataclasses

import numpy as np

from perception_env.data.sample import Sample


def resize_sample(sample: Sample, width: int, height: int) -> Sample:
    """Return ``sample`` with its image resized to ``width x height`` pixels.

    Boxes and points are scaled with the image, so targets stay in the pixels
    of the image the agent sees. The original size is kept in
    ``meta["original_size"]`` (``[width, height]``) for evaluation.
    """
    from PIL import Image

    if (sample.width, sample.height) == (width, height):
        return sample
    sx, sy = width / sample.width, height / sample.height
    image = np.asarray(
        Image.fromarray(sample.load_image()).resize((width, height), Image.Resampling.BILINEAR),
        dtype=np.uint8,
    )
    meta = {**sample.meta, "original_size": [sample.width, sample.height]}
    return dataclasses.replace(
        sample,
        width=width,
        height=height,
        image=image,
        image_path=None,
        boxes=np.asarray(sample.boxes, dtype=np.float64) * [sx, sy, sx, sy],
        points=np.asarray(sample.points, dtype=np.float64) * [sx, sy],
        meta=meta,
    )
