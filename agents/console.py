"""How ``perception-r1`` talks to its user: one-line errors, log levels, CPU threads, early checks.

* A mistake the user made (a flag, a file, an env id) is one line naming it; ``--debug`` shows the traceback.
* Progress and information go through :mod:`logging` (``--quiet``: warnings only; ``--verbose``: debug);
  results (tables, "saved to ...") stay on stdout.
* ``--threads``: torch's CPU threads. ``auto`` is 1 for a model under :data:`SMALL_MODEL` parameters (at
  that size a second thread only waits on the first: the 0.26M tiny model trains ~3x faster on one thread
  of a 2-core machine) and ``min(cores, 8)`` for larger ones.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.errors import MissingFileError, SetupError
from agents.model_folder import check_absent_model

SMALL_MODEL = 10_000_000  # parameters: below it, torch runs on one CPU thread by default
MAX_THREADS = 8

log = logging.getLogger("agents")
# what the ``train`` extra adds to the torch-free base install (envs, metrics, eval of reference agents)
TRAIN_EXTRA = ("torch", "transformers", "tokenizers", "tensorboard", "tqdm", "peft")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (what is wrong, and where the options are), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def common_options() -> argparse.ArgumentParser:
    """The options every sub-command takes (as a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output")
    level = group.add_mutually_exclusive_group()
    level.add_argument("--quiet", action="store_true", help="warnings and results only (no progress)")
    level.add_argument("--verbose", action="store_true", help="debug messages too")
    group.add_argument("--debug", action="store_true", help="show the traceback of an error")
    group.add_argument(
        "--threads",
        type=threads_option,
        default="auto",
        metavar="N|auto",
        help="torch CPU threads (default auto: 1 for a model under 10M parameters, which trains faster on "
        f"one, else min(cores, {MAX_THREADS}))",
    )
    return parent


def threads_option(text: str) -> int | str:
    """``--threads``' argparse type: ``auto`` or a whole number >= 1."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected auto or a positive integer, got {text!r}")
    return value


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Messages of ``agents`` on stderr, bare (``--quiet``: warnings; ``--verbose``: debug)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    if quiet:  # transformers' bars too (loading and writing weights): read at its import, or switched off
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def show_progress() -> bool:
    """Whether progress bars are wanted (not under ``--quiet``)."""
    return log.getEffectiveLevel() <= logging.INFO


def set_threads(choice: int | str = "auto", model: Any = None) -> int:
    """Set torch's CPU threads (``choice``: a number, or ``auto`` from ``model``'s size); returns them."""
    import torch

    if choice == "auto":
        parameters = sum(p.numel() for p in model.parameters()) if model is not None else SMALL_MODEL
        choice = 1 if parameters < SMALL_MODEL else max(1, min(os.cpu_count() or 1, MAX_THREADS))
    torch.set_num_threads(int(choice))
    log.debug("torch CPU threads: %d", choice)
    return int(choice)


def make_env(env_id: str, env_kwargs: dict, **extra):
    """``gym.make(env_id, **env_kwargs, **extra)``; a wrong id, argument or data folder is a SetupError naming
    the flag (found before any model loads)."""
    import gymnasium as gym

    import perception_env  # noqa: F401  (registers the envs)

    given = f"--env {env_id} --env-kwargs '{json.dumps(env_kwargs, default=str)}'"
    try:
        return gym.make(env_id, **{**env_kwargs, **extra})
    except gym.error.Error as error:  # unknown id or version
        raise SetupError(
            f"--env {env_id}: {error} (the envs: {', '.join(perception_env.ENV_IDS)})"
        ) from error
    except FileNotFoundError as error:
        raise MissingFileError(f"{given}: {error}") from error
    except (ValueError, TypeError) as error:  # an argument the env or its data loader refuses
        raise SetupError(f"{given}: {error}") from error


def check_train_model_early(argv: list[str]) -> None:
    """``perception-r1 train``'s ``--model`` that names no local folder and cannot be a hub id, refused
    before the train command's options are built: building them imports the agents, and with them torch
    and transformers (~6 s of CPU), which a typo in a path should not cost.

    Only ``--model`` as given on the command line, and not with ``--resume`` (a checkpoint may not need it)
    or ``--help``; everything else is checked when the options are parsed."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--model")
    peek.add_argument("--resume")
    peek.add_argument("-h", "--help", action="store_true")
    given = peek.parse_known_args(argv[1:])[0]
    if importlib.util.find_spec("huggingface_hub") is None:
        return  # the base install, without the train extra: its absence is what to report, and is, later
    if given.model and not given.resume and not given.help and not Path(given.model).expanduser().exists():
        check_absent_model(given.model)


def run_command(run: Callable[[list[str]], None], argv: list[str]) -> None:
    """``run(argv)`` (``argv`` starts with the sub-command) as ``perception-r1`` runs it: a
    :class:`SetupError` is one line naming the mistake (``--debug``: the traceback), a missing package of
    the ``train`` extra one line naming the install command."""
    try:
        run(argv)
    except SetupError as error:  # a wrong option or file: its message says which and what, no traceback
        if "--debug" in argv:
            raise
        raise SystemExit(
            f"perception-r1 {argv[0] if argv else ''}: {error} (--debug: the traceback)"
        ) from error
    except ModuleNotFoundError as error:
        if error.name not in TRAIN_EXTRA:
            raise
        command = argv[0] if argv else "this command"
        raise SystemExit(
            f"perception-r1 {command} needs {error.name}, which is not installed: "
            "pip install 'perception-r1[train]' (or run bash scripts/setup.sh in a clone)"
        ) from error
