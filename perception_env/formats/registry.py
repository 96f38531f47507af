"""The answer formats by name: an open registry, as the tasks' (:func:`perception_env.tasks.register_task`).

The package registers its own five; a task that brings its own format registers it beside itself
(:func:`register_format`), and ``answer_format=`` then names it like any other.
"""

from __future__ import annotations

from perception_env.formats.base import AnswerFormat

FORMATS: dict[str, AnswerFormat] = {}  # name -> format, in registration order


def register_format(fmt: AnswerFormat | type[AnswerFormat]) -> AnswerFormat | type[AnswerFormat]:
    """Add ``fmt`` (an :class:`AnswerFormat`, or its class: one instance is made) to :data:`FORMATS` under its
    ``name``; returns what it was given (a class decorator too). A name taken, or a format without ``name``,
    ``frame_name`` and ``produces``, is a ``ValueError``."""
    instance = fmt() if isinstance(fmt, type) else fmt
    if not isinstance(instance, AnswerFormat):
        raise TypeError(f"register_format takes an AnswerFormat, got {type(instance).__name__}")
    for attribute in ("name", "frame_name", "produces"):
        if not getattr(instance, attribute, ""):
            raise ValueError(f"{type(instance).__name__} sets no {attribute}: a format needs it")
    if instance.name in FORMATS:
        raise ValueError(f"answer format {instance.name!r} is already registered")
    FORMATS[instance.name] = instance
    return fmt


def get_format(name: str | AnswerFormat) -> AnswerFormat:
    """The format called ``name`` (an :class:`AnswerFormat` is returned as is)."""
    if isinstance(name, AnswerFormat):
        return name
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown answer format {name!r}; known: {', '.join(FORMATS)}") from None
