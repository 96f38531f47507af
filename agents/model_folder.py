"""Is it a model? A local model folder's files (configuration, weights, processor) or a hub id, checked
before anything loads, so that a wrong ``--model`` fails in a second naming what is missing.

torch-free: ``perception-r1 train`` checks ``--model`` before its options import torch and transformers.
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.errors import MissingFileError, SetupError

# the weights of a model folder: one file, shards (the index names them), or the older pickle format
MODEL_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def check_model_source(name_or_path: str | os.PathLike, option: str = "--model") -> str:
    """``name_or_path`` as transformers should load it, once it is known to be a hub id or a local model
    folder with its configuration, weights and processor files; else fail at once, naming what is missing.

    A path that does not exist and cannot be a hub id (absolute, ``./``, ``~``, two or more ``/``) is "no such
    folder" without asking the hub, and so is a valid hub id whose first part is a local folder (``runs/nope``
    beside a local ``runs/``); a hub id (``Qwen/Qwen2-VL-2B-Instruct``) is returned unchanged.
    ``option``: the flag or argument that named it, for the message."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if not path.exists():
        return check_absent_model(text, option)  # a hub id: transformers downloads it, or finds it cached
    if not path.is_dir():
        raise SetupError(f"{text} ({option}): a file, not a model folder")
    # LoRA adapters (transformers loads the base model adapter_config.json names) or a whole model
    adapters = (path / "adapter_config.json").is_file()
    weight_files = ADAPTER_WEIGHT_FILES if adapters else MODEL_WEIGHT_FILES
    if not adapters and not (path / "config.json").is_file():
        raise MissingFileError(
            f"{path} ({option}): no config.json (the model's configuration): not a Qwen2-VL / Qwen2.5-VL "
            "folder"
        )
    if not any((path / name).is_file() for name in weight_files):
        raise MissingFileError(f"{path} ({option}): no model weights (none of {', '.join(weight_files)})")
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights)
    from agents.policies.processor import check_processor_files  # imports transformers

    check_processor_files(path, option)
    return str(path)


def check_safetensors(path: str | os.PathLike) -> None:
    """Fail, naming the file, unless ``path`` is a whole safetensors file (its header covers the file)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise SetupError(f"{path}: damaged or cut short ({error})") from error


def check_model(model: str, option: str = "--model") -> str:
    """``model`` as transformers should load it: a local model folder, or a hub id that can be had.

    A local folder's files are checked by ``check_model_source``. A path that does not exist is checked
    without importing torch or transformers (:func:`check_absent_model`), and offline
    (``HF_HUB_OFFLINE=1``) a hub id must be in the cache; that fails at once, naming the cure, instead of
    in transformers."""
    if Path(str(model)).expanduser().exists():
        return check_model_source(model, option)
    source = check_absent_model(str(model), option)
    if _hub_offline() and not _in_hub_cache(source):
        raise MissingFileError(
            f"{source} ({option}) is neither a local folder nor in the hub cache, and the hub is off "
            "(HF_HUB_OFFLINE=1): give a model folder (`perception-r1 make-tiny-model DIR` builds one)"
        )
    return source


def check_absent_model(text: str, option: str = "--model") -> str:
    """``text``, which names no local file or folder, as a hub id (returned unchanged); else
    :class:`MissingFileError` "no such folder", without asking the hub and without torch or transformers.

    It cannot be a hub id if it is absolute, starts with ``./`` or ``~``, or has two or more ``/``; and a
    valid hub id whose first part is a local folder (``runs/nope`` beside a local ``runs/``) is read as a
    folder, which does not exist."""
    if not _is_hub_id(text):
        raise MissingFileError(f"no such folder: {text} ({option} names neither a local folder nor a hub id)")
    first = Path(text.split("/")[0])
    if first.is_dir():
        raise MissingFileError(
            f"no such folder: {text} ({option}; {first}/ is a local folder, so it is read as one, not as a hub id)"
        )
    return text


def _is_hub_id(text: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
