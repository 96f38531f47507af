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
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from agents.config import MissingFileError, SetupError

SMALL_MODEL = 10_000_000  # parameters: below it, torch runs on one CPU thread by default
MAX_THREADS = 8

log = logging.getLogger("agents")


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


def check_model(model: str, option: str = "--model") -> str:
    """``model`` as transformers should load it: a local model folder, or a hub id that can be had.

    Beyond ``check_model_source``: offline (``HF_HUB_OFFLINE=1``) a hub id must be in the cache; that fails at
    once, naming the cure, instead of in transformers."""
    from agents.policies.qwen_vl import check_model_source

    source = check_model_source(model, option)
    if Path(source).expanduser().exists():
        return source
    if _hub_offline() and not _in_hub_cache(source):
        raise MissingFileError(
            f"{source} ({option}) is neither a local folder nor in the hub cache, and the hub is off "
            "(HF_HUB_OFFLINE=1): give a model folder (`perception-r1 make-tiny-model DIR` builds one)"
        )
    return source


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
