"""Grounding over shapes scenes: referring expressions that pick out exactly one object.

An expression names the target's colour and shape (``"the red circle"``).
When another object has the same colour and shape, a spatial word is added:
an extreme within that group (``"the leftmost red circle"``) or a relation
to a uniquely described anchor (``"the red circle left of the blue square"``).

Uniqueness is checked, not hoped for: :func:`referents` resolves an
expression *leniently* (every object a reader could reasonably think is
meant), and the generator only emits an expression whose referents are
exactly the target. Ties count as ambiguous: two objects whose centres are
closer than half an object size along the axis of "leftmost" are both
candidates; "left of" only excludes objects whose centre is not left of the
anchor's centre, while the target must lie entirely left of the anchor's box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_env.data.sample import Sample
from perception_env.data.synthetic.shape_tasks import _ShapesDataset, _signature
from perception_env.data.synthetic.shapes import ShapeObject, place_objects, render_scene

# word -> (axis 0=x 1=y, sign): the extreme is the smallest sign*centre
EXTREMES = {"leftmost": (0, 1), "rightmost": (0, -1), "topmost": (1, 1), "bottommost": (1, -1)}
# relation -> (axis, sign): target "rel" anchor means sign*target_centre < sign*anchor_centre
RELATIONS = {"left of": (0, 1), "right of": (0, -1), "above": (1, 1), "below": (1, -1)}


@dataclass(frozen=True)
class Expression:
    """A structured referring expression; ``str()`` gives its text."""

    color: str
    shape: str
    extreme: str | None = None  # a key of EXTREMES
    relation: str | None = None  # a key of RELATIONS
    anchor: tuple[str, str] | None = None  # (colour, shape) of the anchor object

    def __str__(self) -> str:
        words = ["the"] + ([self.extreme] if self.extreme else []) + [self.color, self.shape]
        if self.relation:
            words += [self.relation, "the", *self.anchor]
        return " ".join(words)


def _group(objects: list[ShapeObject], color: str, shape: str) -> list[int]:
    return [i for i, o in enumerate(objects) if o.color == color and o.shape == shape]


def referents(expr: Expression, objects: list[ShapeObject]) -> list[int]:
    """Indices of every object the expression could mean (lenient reading)."""
    group = _group(objects, expr.color, expr.shape)
    if expr.extreme:
        axis, sign = EXTREMES[expr.extreme]
        best = min(sign * objects[i].center[axis] for i in group)
        tie = 0.5 * min(objects[i].size for i in group)
        return [i for i in group if sign * objects[i].center[axis] < best + tie]
    if expr.relation:
        axis, sign = RELATIONS[expr.relation]
        anchors = _group(objects, *expr.anchor)
        return [
            i
            for i in group
            if any(sign * objects[i].center[axis] < sign * objects[a].center[axis] for a in anchors)
        ]
    return group


def _clearly(relation: str, target: ShapeObject, anchor: ShapeObject) -> bool:
    """The target lies entirely on the named side of the anchor's box."""
    t, a = target.box, anchor.box
    return {"left of": t[2] <= a[0], "right of": t[0] >= a[2], "above": t[3] <= a[1], "below": t[1] >= a[3]}[
        relation
    ]


def unique_expressions(objects: list[ShapeObject], target: int) -> list[Expression]:
    """Every expression this module can build that refers to ``objects[target]`` alone.

    The attribute-only form comes alone when it is unique (no spatial word is
    needed then); otherwise the unambiguous extremes and relations.
    """
    obj = objects[target]
    plain = Expression(obj.color, obj.shape)
    if referents(plain, objects) == [target]:
        return [plain]
    found = [Expression(obj.color, obj.shape, extreme=w) for w in EXTREMES]
    for anchor in objects:
        key = (anchor.color, anchor.shape)
        if key == (obj.color, obj.shape) or len(_group(objects, *key)) != 1:
            continue  # the anchor itself must be unique and distinct from the target's kind
        found += [
            Expression(obj.color, obj.shape, relation=r, anchor=key)
            for r in RELATIONS
            if _clearly(r, obj, anchor)
        ]
    return [e for e in found if referents(e, objects) == [target]]


class ShapesGrounding(_ShapesDataset):
    """Find the one object a referring expression describes.

    ``query`` is the expression (``"the red circle"``, ``"the topmost green
    triangle"``, ``"the blue square below the red circle"``), ``boxes`` holds
    the target's box (pixels), ``labels`` its shape. ``meta`` has every object
    (``"objects"``), the target's index and the structured expression. In
    about half of the scenes with two or more objects another object shares
    the target's colour and shape, so that a spatial word is needed.
    """

    task = "grounding"

    def draw(self, rng):
        d = self.difficulty
        lo, hi = d.num_objects
        n = int(rng.integers(max(lo, 1), hi + 1))
        attributes = self.random_attributes(rng, n)
        if n >= 2 and rng.random() < 0.5:
            attributes[1] = attributes[0]
        objects = place_objects(rng, d, attributes)
        if objects is None:
            return None
        order = rng.permutation(n)
        objects = [objects[i] for i in order]
        target = int(np.flatnonzero(order == 0)[0])
        choices = unique_expressions(objects, target)
        if not choices:
            return None  # e.g. three look-alikes in one row and column pattern: draw another scene
        return objects, target, choices[int(rng.integers(len(choices)))]

    def signature(self, content):
        objects, target, expr = content
        return _signature(objects), objects[target].box, str(expr)

    def render(self, rng, content, sample_id):
        objects, target, expr = content
        d = self.difficulty
        assert referents(expr, objects) == [target], "generator produced an ambiguous expression"
        return Sample(
            sample_id=sample_id,
            width=d.image_size,
            height=d.image_size,
            image=render_scene(rng, d, objects),
            boxes=np.array([objects[target].box], dtype=np.float64),
            labels=(objects[target].shape,),
            query=str(expr),
            meta={
                "objects": [o.as_dict() for o in objects],
                "target_index": target,
                "expression": {k: v for k, v in vars(expr).items() if v is not None},
                "difficulty": d.name,
            },
        )
