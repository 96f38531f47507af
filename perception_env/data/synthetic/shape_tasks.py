"""Detection and counting views over shapes scenes.

Class names are the shape names (``"circle"``, ...); colour is an attribute,
not a class. All coordinates are pixels of the generated image.
"""

from __future__ import annotations

import numpy as np

from perception_env.data.sample import Sample
from perception_env.data.synthetic.base import SyntheticDataset
from perception_env.data.synthetic.shapes import ShapeObject, place_objects, render_scene


def _boxes(objects: list[ShapeObject]) -> np.ndarray:
    return np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4)


def _signature(objects: list[ShapeObject]) -> tuple:
    return tuple(sorted((o.shape, o.color, o.box) for o in objects))


class _ShapesDataset(SyntheticDataset):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.categories = tuple(self.difficulty.shapes)

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.difficulty.image_size, self.difficulty.image_size)  # every scene is this square

    def random_attributes(self, rng: np.random.Generator, n: int, shapes=None) -> list[tuple[str, str]]:
        shapes = self.difficulty.shapes if shapes is None else shapes
        colors = self.difficulty.colors
        return [
            (shapes[int(rng.integers(len(shapes)))], colors[int(rng.integers(len(colors)))]) for _ in range(n)
        ]


class ShapesDetection(_ShapesDataset):
    """Detect every shape: ``boxes`` + ``labels`` (shape names), ``categories`` = ``difficulty.shapes``.

    ``meta["objects"]`` lists every object with its colour; see
    :class:`~perception_env.data.synthetic.base.SyntheticDataset` for arguments.
    """

    task = "detection"

    def draw(self, rng):
        lo, hi = self.difficulty.num_objects
        n = int(rng.integers(max(lo, 1), hi + 1))
        return place_objects(rng, self.difficulty, self.random_attributes(rng, n))

    def signature(self, objects):
        return _signature(objects)

    def render(self, rng, objects, sample_id):
        d = self.difficulty
        return Sample(
            sample_id=sample_id,
            width=d.image_size,
            height=d.image_size,
            image=render_scene(rng, d, objects),
            boxes=_boxes(objects),
            labels=tuple(o.shape for o in objects),
            meta={"objects": [o.as_dict() for o in objects], "difficulty": d.name},
        )


ALL_OBJECTS = "object"  # the counting query when every object counts (Difficulty.count_query == "all")


class ShapesCounting(_ShapesDataset):
    """Count the objects of one class: ``query`` = a shape name, ``points`` = their box centres.

    With ``difficulty.count_query == "all"``, every object counts and ``query`` is ``"object"``.

    The count ``k`` is drawn first, uniformly from ``difficulty.count_range``
    (capped by the largest number of objects), so every answer is equally
    likely; ``k = 0`` asks for a class that is absent. Other objects are of
    other classes. ``boxes``/``labels`` are those of the counted objects,
    ``count == len(points)``, ``meta["objects"]`` lists every object.
    """

    task = "counting"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only counting needs this: detection and grounding are well posed with a single shape class.
        if len(self.difficulty.shapes) < 2 and self.difficulty.count_query == "shape":
            raise ValueError(
                "counting one shape class among others needs two shape classes (count_query='all' does not)"
            )

    def draw(self, rng):
        d = self.difficulty
        lo, hi = d.num_objects
        k = int(rng.integers(d.count_range[0], min(d.count_range[1], hi) + 1))
        if d.count_query == "all":  # every object counts; k = 0 is an empty image
            query, attributes = ALL_OBJECTS, self.random_attributes(rng, k)
        else:
            query = d.shapes[int(rng.integers(len(d.shapes)))]
            others = [s for s in d.shapes if s != query]
            n = int(rng.integers(max(lo, k, 1), max(hi, k) + 1))
            attributes = self.random_attributes(rng, k, (query,)) + self.random_attributes(rng, n - k, others)
        objects = place_objects(rng, d, attributes)
        if objects is None:
            return None
        order = rng.permutation(len(objects))  # draw order must not reveal which objects are counted
        return query, [objects[i] for i in order]

    def signature(self, content):
        query, objects = content
        return (query, _signature(objects)) if objects else None  # one empty image, in every split

    def render(self, rng, content, sample_id):
        query, objects = content
        d = self.difficulty
        counted = [o for o in objects if query in (ALL_OBJECTS, o.shape)]
        return Sample(
            sample_id=sample_id,
            width=d.image_size,
            height=d.image_size,
            image=render_scene(rng, d, objects),
            boxes=_boxes(counted),
            labels=tuple(o.shape for o in counted),
            points=np.array([o.center for o in counted], dtype=np.float64).reshape(-1, 2),
            query=query,
            count=len(counted),
            meta={"objects": [o.as_dict() for o in objects], "difficulty": d.name},
        )
