"""Loading a Qwen2-VL / Qwen2.5-VL processor with or without torchvision.

Why this module exists: in transformers 5.x, ``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor`` take a
*video* processor, and the only video processor for these models needs torchvision. Without torchvision,
``AutoProcessor.from_pretrained`` does not fail: it silently returns the bare tokenizer. The classes below
are the same processors minus the video processor (images and text only), which is all the environments
need. When torchvision is installed (typical on GPU machines) ``load_processor`` prefers the real class.

Checkpoints are always saved under the *standard* class name (``Qwen2VLProcessor`` ...) so that other
tools that only know transformers read them as ordinary Qwen-VL checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

__all__ = [
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


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor: works without torchvision.

    Its ``__init__`` names only ``image_processor`` and ``tokenizer``: ``ProcessorMixin`` derives the list
    of sub-processors to load and save from the ``__init__`` signature.
    """

    standard_class_name = "Qwen2VLProcessor"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs
        )

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        out = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        _standardise_saved_files(save_directory, self.standard_class_name, self.image_processor)
        return out


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without a video processor (see ``ImageOnlyQwen2VLProcessor``)."""

    standard_class_name = "Qwen2_5_VLProcessor"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs
        )

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        out = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        _standardise_saved_files(save_directory, self.standard_class_name, self.image_processor)
        return out


_BY_MODEL_TYPE = {"qwen2_vl": ImageOnlyQwen2VLProcessor, "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor}


def processor_class_for(model_type: str):
    """The image-only processor class for a config ``model_type`` ("qwen2_vl" or "qwen2_5_vl")."""
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise ValueError(f"unsupported model_type {model_type!r}; expected one of {sorted(_BY_MODEL_TYPE)}")


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


def load_processor(
    name_or_path: str | os.PathLike,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    model_type: str | None = None,
):
    """Load the processor of a Qwen2-VL / Qwen2.5-VL checkpoint (local folder or hub id).

    Tries ``AutoProcessor`` first (the real class, when torchvision is available); if that gives back
    anything without an ``image_processor`` (the bare tokenizer: what happens without torchvision), builds
    the image-only processor from the PIL image processor and the tokenizer of the same checkpoint.
    ``min_pixels`` / ``max_pixels`` bound the image area after the processor's smart resize.
    """
    name_or_path = str(name_or_path)
    size = None
    if min_pixels is not None or max_pixels is not None:
        size = {}
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)

    processor = None
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
    except (ImportError, OSError, ValueError, TypeError, KeyError):
        processor = None
    if processor is None or not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        model_type = model_type or _model_type_of(name_or_path)
        cls = processor_class_for(model_type)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(name_or_path)
        processor = cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=getattr(tokenizer, "chat_template", None),
        )
    if size is not None:
        merged = dict(processor.image_processor.size)
        merged.update(size)
        processor.image_processor.size = merged
    return processor
