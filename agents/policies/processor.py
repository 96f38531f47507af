"""Loading a Qwen2-VL / Qwen2.5-VL processor with or without torchvision.

Why this module exists: in transformers 5.x, ``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor`` take a
*video* processor, and the only video processor for these models needs torchvision. Without torchvision,
``AutoProcessor.from_pretrained`` raises ImportError (some 5.x releases silently return the bare
tokenizer instead). The classes below
are the same processors minus the video processor (images and text only), which is all the environments
need. When torchvision is installed (typical on GPU machines) ``load_processor`` prefers the real class.

Checkpoints are always saved under the *standard* class name (``Qwen2VLProcessor`` ...) so that other
tools that only know transformers read them as ordinary Qwen-VL checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import AutoProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.utils import is_torchvision_available

from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

__all__ = [
    "check_processor_files",
    "check_vision_chat_template",
    "ImageOnlyQwen2VLProcessor",
    "ImageOnlyQwen2_5_VLProcessor",
    "load_processor",
    "processor_class_for",
]


def _standardise_saved_files(save_directory: str | os.PathLike, name: str, image_processor) -> None:
    """Make a saved image-only processor read like a standard Qwen-VL one.

    - ``processor_class`` becomes the standard transformers name in every json file that names it;
    - ``processor_config.json`` gets a nested ``video_processor`` entry (Qwen2-VL's video processor with the
      image processor's patch sizes), so that ``AutoProcessor`` with torchvision installed builds the real
      processor instead of failing on the missing video processor config. Without torchvision that entry
      is never read (``load_processor`` falls back to the image-only class).
    """
    for fname in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = Path(save_directory) / fname
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        changed = False
        if "processor_class" in data:
            data["processor_class"] = name
            changed = True
        if fname == "processor_config.json" and "video_processor" not in data:
            data["video_processor"] = {
                "video_processor_type": "Qwen2VLVideoProcessor",
                "patch_size": image_processor.patch_size,
                "temporal_patch_size": image_processor.temporal_patch_size,
                "merge_size": image_processor.merge_size,
            }
            changed = True
        if changed:
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class _ImageOnly:
    """Mixin for a Qwen-VL processor without a video processor: works without torchvision.

    Its ``__init__`` names only ``image_processor`` and ``tokenizer``: ``ProcessorMixin`` derives the list
    of sub-processors to load and save from the ``__init__`` signature. Saved files name the standard class
    (``standard_class_name``), so transformers' own ``AutoProcessor`` reads them too.
    """

    standard_class_name: str

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs
        )

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        out = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        _standardise_saved_files(save_directory, self.standard_class_name, self.image_processor)
        return out


class ImageOnlyQwen2VLProcessor(_ImageOnly, Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor."""

    standard_class_name = "Qwen2VLProcessor"


class ImageOnlyQwen2_5_VLProcessor(_ImageOnly, Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without a video processor."""

    standard_class_name = "Qwen2_5_VLProcessor"


_BY_MODEL_TYPE = {"qwen2_vl": ImageOnlyQwen2VLProcessor, "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor}


def processor_class_for(model_type: str):
    """The image-only processor class for a config ``model_type`` ("qwen2_vl" or "qwen2_5_vl")."""
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise ValueError(
            f"unsupported model_type {model_type!r}; expected one of {sorted(_BY_MODEL_TYPE)}"
        ) from None


_BY_PROCESSOR_CLASS = {"Qwen2VLProcessor": "qwen2_vl", "Qwen2_5_VLProcessor": "qwen2_5_vl"}


def _model_type_of(name_or_path: str) -> str:
    """The checkpoint's model_type from config.json, or for a processor-only folder from processor_class."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path).model_type
    except (OSError, ValueError):
        path = Path(name_or_path) / "processor_config.json"
        if path.is_file():
            name = json.loads(path.read_text(encoding="utf-8")).get("processor_class")
            if name in _BY_PROCESSOR_CLASS:
                return _BY_PROCESSOR_CLASS[name]
        raise


# a local folder's tokenizer (or the slow one's pair of files) and image-processor settings
TOKENIZER_FILES = ("tokenizer.json",)
SLOW_TOKENIZER_FILES = ("vocab.json", "merges.txt")
IMAGE_FILES = ("preprocessor_config.json", "processor_config.json")


def check_processor_files(folder: str | os.PathLike, option: str = "name_or_path") -> None:
    """Fail, naming the missing file, unless the local ``folder`` holds a tokenizer (``tokenizer.json``, or
    the slow tokenizer's ``vocab.json`` + ``merges.txt``) and the image processor's settings.

    Without these transformers does not fail: it builds a tokenizer with an empty vocabulary, or asks the hub.
    ``option``: the flag or argument that named the folder, for the message."""
    from agents.config import MissingFileError

    folder = Path(folder)
    names = (*TOKENIZER_FILES, *SLOW_TOKENIZER_FILES, *IMAGE_FILES)
    has = {name: (folder / name).is_file() for name in names}
    if not any(has[n] for n in TOKENIZER_FILES) and not all(has[n] for n in SLOW_TOKENIZER_FILES):
        raise MissingFileError(
            f"{folder} ({option}): no tokenizer.json (nor vocab.json + merges.txt): the tokenizer's files "
            "are missing; copy them from the model this one was made from"
        )
    if not any(has[n] for n in IMAGE_FILES):
        raise MissingFileError(
            f"{folder} ({option}): no preprocessor_config.json (nor processor_config.json): the image "
            "processor's settings are missing"
        )


def check_vision_chat_template(processor, name_or_path: str) -> None:
    """Fail at load time, naming the checkpoint, unless its chat template places an image in a user turn."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
    try:
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # jinja errors, a missing template: all mean the same to the user
        raise ValueError(
            f"{name_or_path}: its chat template cannot render an image message ({error})"
        ) from error
    if "<|image_pad|>" not in text:
        raise ValueError(
            f"{name_or_path}: its chat template writes no <|image_pad|> for an image (a text-only template?); "
            "a Qwen-VL checkpoint carries the vision template in chat_template.json or chat_template.jinja"
        )


def load_processor(
    name_or_path: str | os.PathLike,
    *,
    min_pixels: int | None = DEFAULT_MIN_PIXELS,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    model_type: str | None = None,
):
    """Load the processor of a Qwen2-VL / Qwen2.5-VL checkpoint (local folder or hub id).

    Tries ``AutoProcessor`` first (the real class, when torchvision is available); if that fails or gives
    back anything without an ``image_processor`` (what happens without torchvision), loads the image-only
    processor of the same checkpoint: the PIL image processor, the tokenizer and the processor's chat
    template. Either way the chat template must place images (checked here).
    ``min_pixels`` / ``max_pixels`` bound the image area after the processor's smart resize. Their defaults
    are the envs' (``perception_env.frames``), so that images are shown to the model in the frame the envs score
    answers in; ``None`` keeps the checkpoint's own bound (Qwen's released files: up to 12,845,056 pixels, where
    a 2000x1500 image is seen at 1988x1512 but scored at 1148x840).
    """
    name_or_path = str(name_or_path)
    if Path(name_or_path).is_dir():
        check_processor_files(name_or_path)
    size = None
    if min_pixels is not None or max_pixels is not None:
        size = {}
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)

    processor = None
    if is_torchvision_available():  # else AutoProcessor raises ImportError (or returns the tokenizer)
        try:
            processor = AutoProcessor.from_pretrained(name_or_path)
        except (ImportError, OSError, ValueError, TypeError, KeyError):
            processor = None
    if processor is None or not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        cls = processor_class_for(model_type or _model_type_of(name_or_path))
        # ProcessorMixin.from_pretrained takes the chat template from chat_template.json/.jinja: in the
        # released Qwen2.5-VL files the tokenizer's own template is the text-only Qwen2.5 one
        processor = cls.from_pretrained(name_or_path)
        if not isinstance(processor.image_processor, Qwen2VLImageProcessorPil):
            processor.image_processor = Qwen2VLImageProcessorPil.from_pretrained(name_or_path)
    check_vision_chat_template(processor, name_or_path)
    if size is not None:
        merged = dict(processor.image_processor.size)
        merged.update(size)
        processor.image_processor.size = merged
    return processor
