"""Numbers and JSON from the command line, checked: the bounds an option's value must keep and the argparse
types that parse within them.

Imports neither the options (agents/config.py) nor perception_env, so the console's first screen
(``perception-r1 --help``) builds its flags with them in a few hundredths of a second.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
from typing import Any

# opt(...) metadata key -> (its sign in messages, the test a value must pass)
BOUNDS = {
    "minimum": (">=", operator.ge),
    "exclusive_minimum": (">", operator.gt),
    "maximum": ("<=", operator.le),
    "exclusive_maximum": ("<", operator.lt),
}


def bound_problem(value: float, **bounds: float | None) -> str | None:
    """What is wrong with ``value`` against ``bounds`` (keys of :data:`BOUNDS`), e.g. ``"must be > 0"``;
    None if it is within them. A float must be finite whatever the bounds."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    for name, bound in bounds.items():
        sign, holds = BOUNDS[name]
        if bound is not None and not holds(value, bound):
            return f"must be {sign} {bound}"
    return None


def bounded(kind: type, **bounds: float) -> Any:
    """An argparse ``type`` parsing ``kind`` within :data:`BOUNDS`, e.g. ``bounded(int, minimum=1)``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            article = "an" if kind.__name__[0] in "aeiou" else "a"
            raise argparse.ArgumentTypeError(f"expected {article} {kind.__name__}, got {text!r}") from None
        problem = bound_problem(value, **bounds)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def json_object(text: str) -> dict:
    """An argparse ``type``: a JSON object, e.g. ``'{"difficulty": "easy"}'``; anything else says what it got."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not JSON ({error.msg} at character {error.pos}): {text!r:.80}; "
            """write an object in single quotes, e.g. '{"difficulty": "easy"}'"""
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"a JSON object {{...}} is needed, got {type(value).__name__}: {text:.80}"
        )
    return value
