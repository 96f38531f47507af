"""A run's checkpoints on disk: written durably, found again, checked before anything loads.

Checkpoints: ``RUN/checkpoints/step-NNNNNN`` is written under a temporary name, flushed to disk (fsync)
and renamed, so it is either complete or absent; ``RUN/latest_checkpoint.json`` names the checkpoint the
run saved or was resumed from last, which ``--resume RUN`` continues: after ``--resume
RUN/checkpoints/step-000012`` (a branch, e.g. with another flag) that is the branch, not the old run's
newest step. A ``step-*`` folder without its state file or weights (a copy cut short, a run killed by an
older version) is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from agents.config import MissingFileError, SetupError
from agents.trainer_state import (
    check_legacy_state,
    read_legacy_state,
    read_safetensors_state,
)

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.safetensors"  # tensors + JSON (agents/trainer_state.py): loading runs no code
LEGACY_STATE_FILE = "trainer_state.pt"  # earlier versions' torch pickle: read restricted, never written
RUN_FILE = "run.json"
LATEST_FILE = "latest_checkpoint.json"  # in the run folder: {"checkpoint": "step-NNNNNN"}


class CheckpointWarning(UserWarning):
    """A checkpoint folder skipped, or a run's checkpoints about to be replaced."""


def non_finite_weights(model: torch.nn.Module) -> list[str]:
    """Names of the trained parameters (``requires_grad``) holding NaN or inf; this rank's shards (FSDP2)."""
    from torch.distributed.tensor import DTensor

    def finite(p: torch.Tensor) -> bool:
        return bool(torch.isfinite(p.to_local() if isinstance(p, DTensor) else p).all())

    return [name for name, p in model.named_parameters() if p.requires_grad and not finite(p)]


# ------------------------------------------------------------------ checkpoint files
def checkpoint_problem(folder: Path) -> str | None:
    """The piece ``folder`` lacks to be a checkpoint, or None if it has its state file and policy weights."""
    from agents.model_folder import ADAPTER_WEIGHT_FILES, MODEL_WEIGHT_FILES

    state = state_file(folder)
    if not state.is_file() or state.stat().st_size == 0:
        return f"no {STATE_FILE}"
    if not any((folder / "policy" / name).is_file() for name in MODEL_WEIGHT_FILES + ADAPTER_WEIGHT_FILES):
        return "no policy weights (policy/model.safetensors or policy/adapter_model.safetensors)"
    return None


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """``run_dir``'s complete ``checkpoints/step-*`` folders by step; the others skipped with a warning."""
    found = []
    for folder in sorted((Path(run_dir) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*")):
        problem = checkpoint_problem(folder) if folder.is_dir() else "not a folder"
        if problem is None:
            found.append(folder)
        else:
            # attributed here, not to the caller: each folder is reported once per process
            warnings.warn(
                f"skipping {folder}: {problem} (an interrupted write or copy)",
                CheckpointWarning,
                stacklevel=1,
            )
    return found


def _is_checkpoint_path(path: Path) -> bool:
    return state_file(path).exists() or (
        path.name.startswith(CHECKPOINT_PREFIX) and path.parent.name == "checkpoints"
    )


def latest_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a checkpoint, else the one ``path/latest_checkpoint.json`` names (the
    checkpoint the run saved or was resumed from last), else the newest complete ``checkpoints/step-*``."""
    path = Path(path)
    if _is_checkpoint_path(path):
        problem = checkpoint_problem(path)
        if problem:
            raise MissingFileError(f"{path}: not a complete checkpoint ({problem})")
        return path
    if not path.is_dir():
        raise MissingFileError(f"no such run or checkpoint folder: {path}")
    found = complete_checkpoints(path)
    if not found:
        raise MissingFileError(
            f"no complete checkpoint under {path} (expected {path}/checkpoints/{CHECKPOINT_PREFIX}NNNNNN "
            f"with {STATE_FILE} and policy/)"
        )
    pointed = _pointed_checkpoint(path)
    if pointed is None or pointed in found:
        return pointed or found[-1]
    warnings.warn(
        f"{path / LATEST_FILE} names {pointed.name}, which is missing or incomplete; continuing "
        f"from the newest complete checkpoint, {found[-1].name}",
        CheckpointWarning,
        stacklevel=2,
    )
    return found[-1]


def _pointed_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / LATEST_FILE
    if not pointer.is_file():
        return None
    try:
        return run_dir / "checkpoints" / Path(json.loads(pointer.read_text())["checkpoint"]).name
    except (ValueError, KeyError, TypeError) as error:
        warnings.warn(f"{pointer} is unreadable ({error}); ignoring it", CheckpointWarning, stacklevel=3)
        return None


def read_run_file(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's ``run.json`` (agent, options, lineage), or {} for one written before it existed."""
    path = Path(checkpoint) / RUN_FILE
    if not path.is_file():
        return {}
    try:
        run = json.loads(path.read_text())
    except ValueError as error:
        raise SetupError(f"{path}: not valid JSON ({error}); the checkpoint is damaged") from error
    if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
        raise SetupError(f'{path}: expected an object with the run\'s options under "config"')
    return run


def state_file(checkpoint: Path) -> Path:
    """``checkpoint``'s trainer state: ``trainer_state.safetensors``, else an older version's pickle."""
    path = Path(checkpoint) / STATE_FILE
    legacy = Path(checkpoint) / LEGACY_STATE_FILE
    return legacy if legacy.exists() and not path.exists() else path


def read_state(checkpoint: Path) -> dict[str, Any]:
    """``checkpoint``'s trainer state, on the CPU; no code in the folder runs (agents/trainer_state.py).

    :class:`SetupError` naming the file if it is damaged, not a trainer state, or (an older version's
    ``trainer_state.pt``) needs more than tensors and plain values to unpickle."""
    path = state_file(checkpoint)
    state = read_legacy_state(path) if path.name == LEGACY_STATE_FILE else read_safetensors_state(path)
    missing = {"step", "agent", "rng", "config"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise SetupError(f"{path}: not a trainer state (missing {', '.join(sorted(missing))})")
    return state


def verify_checkpoint(checkpoint: Path) -> None:
    """Fail now, naming the file, if a file of ``checkpoint`` is cut short (before any model is loaded):
    ``run.json`` must parse, the trainer state and every safetensors file must hold the tensors their
    headers list (an older version's ``trainer_state.pt`` must end with its zip directory and need nothing
    but tensors and plain values to unpickle)."""
    from agents.model_folder import check_safetensors

    read_run_file(checkpoint)
    state = state_file(checkpoint)
    if state.name == STATE_FILE:
        check_safetensors(state)
    elif not zipfile.is_zipfile(state):
        raise SetupError(
            f"{state}: damaged or cut short (no zip directory at its end): resume from another "
            "checkpoint of the run"
        )
    else:
        check_legacy_state(state)  # code in a pickle refused before any model loads
    for weights in sorted((checkpoint / "policy").glob("*.safetensors")):
        check_safetensors(weights)


def _saved_at(checkpoint: Path) -> float:
    """When ``checkpoint`` was written: ``run.json``'s ``saved_at``, else its state file's mtime."""
    try:
        return float(json.loads((checkpoint / RUN_FILE).read_text())["saved_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return state_file(checkpoint).stat().st_mtime


def prune_checkpoints(root: Path, limit: int, keep: Path) -> list[Path]:
    """Delete the earliest-written complete checkpoints under ``root`` beyond ``limit`` (0 = keep all);
    never ``keep`` (the one just written). Returns the deleted folders."""
    if limit <= 0:
        return []
    others = sorted((c for c in complete_checkpoints(root.parent) if c != keep), key=_saved_at)
    doomed = others[: max(0, len(others) + 1 - limit)]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


def point_latest(run_dir: Path, checkpoint: Path) -> None:
    """Make ``checkpoint`` the one ``--resume run_dir`` continues."""
    write_atomic(Path(run_dir) / LATEST_FILE, json.dumps({"checkpoint": Path(checkpoint).name}) + "\n")


def warn_if_branching(run_dir: Path, checkpoint: Path, step: int) -> None:
    """A warning when ``step`` is older than ``run_dir``'s newest checkpoint: the resumed run replaces the
    later ones as it saves."""
    later = [c.name for c in complete_checkpoints(run_dir) if _step_of(c) > step]
    if later:
        warnings.warn(
            f"resuming {run_dir} from step {step}, before its newest checkpoint ({later[-1]}): this branch "
            f"replaces {', '.join(later)} as it saves those steps; --resume {run_dir} now continues the "
            "branch",
            CheckpointWarning,
            stacklevel=3,
        )


def warn_if_run_has_checkpoints(run_dir: Path) -> None:
    """A warning when a new run starts in ``run_dir``, which already holds an earlier run's checkpoints."""
    found = complete_checkpoints(run_dir)
    if found:
        warnings.warn(
            f"{run_dir} already holds checkpoints up to {found[-1].name} of an earlier run: this new run "
            f"replaces them as it saves (--resume {run_dir} would continue the earlier run instead)",
            CheckpointWarning,
            stacklevel=3,
        )


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(CHECKPOINT_PREFIX))


def _fsync(path: Path) -> None:
    """Flush ``path`` to disk: a file's data, or a folder's entries (where folders can be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return  # Windows opens no folder; its renames are durable without it
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_folder(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` (every file, then every folder) to disk and rename it to ``final``, which an older
    folder of that name (a branch's step written again) leaves only once the new one is in place."""
    for path in sorted(tmp.rglob("*"), key=lambda p: (p.is_dir(), -len(p.parts))):
        _fsync(path)
    _fsync(tmp)
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync(final.parent)
    if old.exists():
        shutil.rmtree(old)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old content or the new, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)
