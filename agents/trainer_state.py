"""A checkpoint's trainer state (optimiser, schedule, RNGs, step, options) stored as data that runs no code.

``trainer_state.safetensors`` holds the tensors (Adam's moments, torch's RNG state) and, in its header's
metadata, everything else as JSON, each tensor in it replaced by ``{"__tensor__": key}``. Reading it
parses bytes, shapes and JSON: a checkpoint from a model hub cannot run code, as an unrestricted pickle
(``torch.load(weights_only=False)``) would. JSON has no tuples and only string keys, so tuples are written
``{"__tuple__": [...]}`` and other dicts ``{"__items__": [[key, value], ...]}``; the state reads back
equal, types included, so a resume stays bit-identical.

Checkpoints of earlier versions hold ``trainer_state.pt`` (a torch pickle). :func:`read_legacy_state`
reads it with torch's restricted unpickler (``weights_only=True``: tensors and plain values), allowing
only the numpy array types its RNG state needs. Anything else in it (a class, a function: what a crafted
file would run) is refused, never loaded, unless :data:`TRUST_VARIABLE` names that very file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.config import SetupError

FORMAT = "perception-r1 trainer state"
VERSION = "1"
TRUST_VARIABLE = "PERCEPTION_R1_TRUST_CHECKPOINT"  # the path of one legacy pickle the user trusts
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


class LegacyCheckpointWarning(UserWarning):
    """A checkpoint in the older ``trainer_state.pt`` format was read (restricted, or trusted by name)."""


# ----------------------------------------------------------------------------------- encoding
def encode(value: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """``value`` as JSON-ready data, its tensors moved into ``tensors`` (named ``tensor.N``).

    ``where``: the value's path, for the error that refuses anything but tensors and plain values."""
    if isinstance(value, torch.Tensor):
        key = f"tensor.{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {_TENSOR: key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):  # a numpy scalar: its Python value (exact for ints and floats)
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {
            _ITEMS: [
                [encode(k, tensors, where), encode(v, tensors, f"{where}.{k}")] for k, v in value.items()
            ]
        }
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}: a trainer state holds tensors, "
        "numbers, strings, None, lists, tuples and dicts only (an agent's state_dict included), so that "
        "loading a checkpoint never runs code"
    )


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_TENSOR}:
        return tensors[value[_TENSOR]]
    if set(value) == {_TUPLE}:
        return tuple(decode(v, tensors) for v in value[_TUPLE])
    if set(value) == {_ITEMS}:
        return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in value[_ITEMS]}
    return {k: decode(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# ----------------------------------------------------------------------------------- files
def write_state(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` (a ``.safetensors`` file); TypeError names a value that is not data."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = encode(state, tensors)
    save_file(tensors, str(path), metadata={"format": FORMAT, "version": VERSION, "state": json.dumps(tree)})


def read_safetensors_state(path: Path) -> dict[str, Any]:
    """The state :func:`write_state` wrote; SetupError naming the file if it is damaged or not a state."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError) as error:
        raise SetupError(
            f"{path}: cannot be read ({error}); the file is damaged or cut short: resume from another "
            "checkpoint of the run"
        ) from error
    if metadata.get("format") != FORMAT or "state" not in metadata:
        raise SetupError(f"{path}: not a trainer state (its header has no {FORMAT!r} metadata)")
    try:
        return decode(json.loads(metadata["state"]), tensors)
    except (ValueError, KeyError, TypeError) as error:
        raise SetupError(f"{path}: its trainer state is damaged ({error!r})") from error


def read_legacy_state(path: Path) -> dict[str, Any]:
    """An older checkpoint's ``trainer_state.pt``, read without running any code in it.

    torch's restricted unpickler, with numpy's array types allowed (the saved numpy RNG state is an
    array). A file that needs any other class or function is refused (:func:`check_legacy_state`), unless
    the environment variable :data:`TRUST_VARIABLE` holds this file's path: then it is unpickled in full,
    with a warning."""
    if _trusted(path):
        warnings.warn(
            f"{path}: unpickled in full because {TRUST_VARIABLE} names it: any code in it has run",
            LegacyCheckpointWarning,
            stacklevel=2,
        )
        return torch.load(path, weights_only=False, map_location="cpu")
    check_legacy_state(path)
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ... for one cause
        raise SetupError(
            f"{path}: cannot be read ({error}); the file is damaged or cut short: resume from another "
            "checkpoint of the run"
        ) from error
    warnings.warn(
        f"{path}: a checkpoint of the older format, read as tensors and plain values only (torch's "
        "restricted unpickler); the run's next checkpoint is written as trainer_state.safetensors",
        LegacyCheckpointWarning,
        stacklevel=2,
    )
    return state


def check_legacy_state(path: Path) -> None:
    """Refuse (SetupError) a ``trainer_state.pt`` whose pickle names any class or function beyond tensors,
    plain values and numpy arrays: what a crafted file calls to run its code (``builtins.exec``,
    ``os.system``). Its opcodes are only scanned, not run: cheap, so checked before any model loads."""
    if _trusted(path):
        return
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as error:  # not a torch zip file, or cut short
        raise SetupError(
            f"{path}: cannot be read ({error}); the file is damaged or cut short: resume from another "
            "checkpoint of the run"
        ) from error
    refused = sorted(needed - _NUMPY_ARRAY_NAMES)
    if refused:
        raise SetupError(
            f"{path}: refused: this trainer state (the older pickle format) calls {', '.join(refused)}, "
            "neither tensors nor plain values; unpickling it could run code, so nothing was loaded. A "
            "trainer state this project wrote never does: the file comes from elsewhere or was changed. "
            f"Only if you wrote it yourself and trust it, {TRUST_VARIABLE}={path} loads it in full"
        )


def _trusted(path: Path) -> bool:
    named = os.environ.get(TRUST_VARIABLE, "")
    return bool(named) and Path(named).expanduser().resolve() == Path(path).resolve()


# what unpickling a numpy array takes (the names numpy 2 and numpy 1 pickle it under)
_NUMPY_ARRAY_NAMES = {
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
}


def _numpy_array_globals() -> list:
    from numpy._core.multiarray import _reconstruct

    return [
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),  # numpy.dtypes.UInt32DType: the dtype's state is set on it (MT19937's key)
    ]


# ----------------------------------------------------------------------------------- RNG states
def seed_global_rngs(seed: int) -> None:
    """Seed torch's (CPU and every GPU), numpy's and Python's global generators: what initialises weights
    (LoRA's A matrices, a head the checkpoint lacks) and dropout draws from them, not from the seeded
    per-step generators of sampling and data order."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy takes 0 .. 2**32 - 1
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """torch's, numpy's and Python's global RNG states as tensors and plain values."""
    import random

    name, key, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, [int(k) for k in key], int(position), int(has_gauss), float(cached_gaussian)],
        "python": random.getstate(),
    }


def set_rng_states(rng: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned (or a legacy state's ``rng``, whose numpy key is an array)."""
    import random

    torch.set_rng_state(rng["torch"])
    name, key, *rest = rng["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), *rest))
    python = rng["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
