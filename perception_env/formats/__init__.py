"""Answer formats: how a model writes boxes, points, counts and text, and how we read them back.

Every format turns a free-text answer into a :class:`ParsedAnswer` whose boxes
and points are in *pixels of the original image*, whatever frame the answer
used (see :mod:`perception_env.frames`), and writes the perfect (oracle) answer
for given targets.

=====================  =====================================================  ================
name                   what the model writes                                  frame
=====================  =====================================================  ================
``qwen2-vl``           ``<|object_ref_start|>dog<|object_ref_end|>``          relative-1000
                       ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``
``qwen2.5-vl``         ``[{"bbox_2d": [x1,y1,x2,y2], "label": "dog"}]``       resized-pixels
                       (or ``"point_2d": [x, y]``), optionally in ```json
``qwen2-vl-points``    ``<|object_ref_start|>dog<|object_ref_end|>(x,y),...``  relative-1000
``number``             ``7``                                                  none
``text``               the page text                                          none
=====================  =====================================================  ================

Parsing never raises, for any input. It is tolerant (it reads what it can) and
separately reports ``well_formed`` (the answer follows the format exactly;
drives the paper's format reward) and ``problems`` (what was off and what was
done about it). Degenerate coordinates have one defined treatment, the same
for every format (:func:`~perception_env.formats.base.objects_to_pixels`):

* NaN / inf coordinate       -> object dropped (and the answer is not well-formed)
* inverted box (x1 > x2 ...) -> corners swapped
* outside the image          -> clipped to ``[0, W] x [0, H]`` (only when a frame is given)
* zero area after clipping   -> kept (it scores IoU 0)
* more than ``MAX_OBJECTS``  -> the first ``MAX_OBJECTS`` are kept (bounds scoring time); the
                               problem names how many the answer held, and it is not well-formed

How a chat model ends an answer is accepted by every format: a trailing run of
stop tokens (:data:`STOP_TOKENS`, ``<|im_end|>`` / ``<|endoftext|>``, as a
decoder keeps them with ``skip_special_tokens=False``), repeated or with white
space among and after them, is removed before parsing. A stop token followed
by anything else ends nothing: the text stays in the answer, counts as extra
text (OCR: as characters of the transcription) and the answer is not well-formed.

Parsing takes time linear in the answer's length, whatever it holds (timed on
worst-case answers up to 1 MB in tests/test_formats_worst_case.py): where a
regular expression could backtrack over a run it is possessive or bounded, and
fences, stop tokens and bare numbers are found with ``str`` methods.

Every object has both a box and a point: a box's point is its centre, a
point's box is the zero-area box ``[x, y, x, y]``. Problems name objects by
their 0-based position in the answer's reading order.

The modules: :mod:`.base` (``ParsedAnswer``, ``AnswerFormat``, the rules above), :mod:`.qwen2`,
:mod:`.qwen25`, :mod:`.plain` (number, text), :mod:`.registry` (``FORMATS``, ``register_format``,
``get_format``). A new format is an ``AnswerFormat`` subclass (``name``, ``frame_name``, ``produces``,
``_parse``, ``write``) and one call, ``register_format(MyFormat)``; it may read and write fields of its
own (``ParsedAnswer.values``, ``write``'s keyword arguments).
"""

from perception_env.formats.base import (
    MAX_OBJECTS,
    STOP_TOKENS,
    AnswerFormat,
    ParsedAnswer,
    strip_stop_tokens,
)
from perception_env.formats.plain import NumberFormat, TextFormat
from perception_env.formats.qwen2 import (
    BOX_END,
    BOX_START,
    REF_END,
    REF_START,
    Qwen2VLFormat,
    Qwen2VLPointsFormat,
)
from perception_env.formats.qwen25 import Qwen25VLFormat
from perception_env.formats.registry import FORMATS, get_format, register_format

for _built_in in (Qwen2VLFormat, Qwen25VLFormat, Qwen2VLPointsFormat, NumberFormat, TextFormat):
    register_format(_built_in)

__all__ = [
    "BOX_END",
    "BOX_START",
    "FORMATS",
    "MAX_OBJECTS",
    "REF_END",
    "REF_START",
    "STOP_TOKENS",
    "AnswerFormat",
    "NumberFormat",
    "ParsedAnswer",
    "Qwen25VLFormat",
    "Qwen2VLFormat",
    "Qwen2VLPointsFormat",
    "TextFormat",
    "get_format",
    "register_format",
    "strip_stop_tokens",
]
