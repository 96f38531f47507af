"""Typed run configuration: one dataclass field per option, its help text beside it.

The same fields are the CLI flags (``--learning-rate 1e-5``), the keys of a
``--config file.yaml``, and the hyperparameter table logged to TensorBoard.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.arguments import BOUNDS, bound_problem, json_object
from agents.errors import MissingFileError, SetupError
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

# The options' fixed values, each list's one home (this module imports no torch, so the command line builds
# its flags without it); the code that acts on a value imports its list from here.
# the KL estimators of a KL-to-reference term (agents/losses.py), an option of GRPO and RLOO
KL_ESTIMATORS = ("k3", "k1")
# the model's dtypes (agents/policies/loading.py maps each to its torch.dtype)
DTYPES = ("float32", "bfloat16", "float16")
# the data-parallel strategies under torchrun (agents/distributed.py)
PARALLEL_STRATEGIES = ("ddp", "fsdp")
# the rollout engines (agents/engines/: make_engine builds each); auto picks one of the others
ROLLOUT_ENGINES = ("auto", "fast", "transformers", "vllm")
# the learning-rate schedules (agents/base.py: Agent._lr_factor)
LR_SCHEDULERS = ("constant", "linear", "cosine")
# what backward recomputes (agents/build.py maps each to QwenVLPolicy's activation_checkpointing)
ACTIVATION_CHECKPOINTING = ("none", "vision", "all")


def opt(default: Any, help: str, choices: tuple[str, ...] | None = None, **kwargs: Any) -> Any:
    """A config field with its help text (read by :func:`add_arguments`).

    ``choices``: the only values the option takes. ``minimum`` / ``exclusive_minimum`` / ``maximum`` /
    ``exclusive_maximum``: the range of a number (every float must also be finite). Both are checked when
    the config is built (flags, YAML or code alike), so an impossible value fails at start-up, before any
    model is loaded, not after the first generation.
    """
    metadata = {"help": help, "choices": choices, **kwargs}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def require(config: Any, name: str, why: str, **bounds: float) -> None:
    """Raise :class:`SetupError` naming the option and its flag unless ``config.<name>`` is within ``bounds``
    (for a bound an algorithm adds to a shared option, e.g. GRPO's group_size >= 2); ``why``: the reason."""
    value = getattr(config, name)
    problem = bound_problem(value, **bounds)
    if problem:
        raise SetupError(f"{name} ({_flag(name)}) {problem} ({why}); got {value!r}")


@dataclass
class TrainConfig:
    """What every agent's training run needs: data, sampling, optimiser, logging, checkpoints."""

    env_id: str = opt("PerceptionR1/Counting-v0", "Gymnasium id of the perception env to train on.")
    env_kwargs: dict = opt({}, "Keyword arguments for gym.make (JSON on the command line), e.g. difficulty.")
    model: str = opt("", "Hub id or local folder of the starting Qwen2-VL / Qwen2.5-VL checkpoint.")
    output_dir: str = opt(
        "runs", "Folder under which the run folder (TensorBoard logs, checkpoints) is made."
    )
    run_name: str = opt("", "Run folder name; default {env}__{agent}__{seed}__{time}.")
    seed: int = opt(0, "Seed of data order, sampling and initialisation.")
    device: str = opt("cpu", "torch device, e.g. cpu or cuda.")
    dtype: str = opt("float32", f"Model dtype: {', '.join(DTYPES)}.", choices=DTYPES)
    parallel: str = opt(
        "ddp",
        "Data-parallel strategy under torchrun: ddp (a replica per rank) or fsdp (FSDP2: parameters, "
        "gradients and optimiser state sharded over the ranks). Ignored in a single process.",
        choices=PARALLEL_STRATEGIES,
    )
    activation_checkpointing: str = opt(
        "none",
        "Recompute activations in backward to save memory: none, vision (the ViT's blocks) or all (decoder "
        "layers too). The shared-prefix forward is kept either way.",
        choices=ACTIVATION_CHECKPOINTING,
    )
    min_pixels: int = opt(
        DEFAULT_MIN_PIXELS,
        "Smallest image area (pixels) after the processor's resize; the env scores in the same frame.",
        minimum=1,
    )
    max_pixels: int = opt(
        DEFAULT_MAX_PIXELS,
        "Largest image area (pixels) after the processor's resize; the env scores in the same frame.",
        minimum=1,
    )

    total_steps: int = opt(100, "Policy-update rounds (one rollout batch each).", minimum=1)
    prompts_per_step: int = opt(8, "Distinct observations per rollout batch (B).", minimum=1)
    group_size: int = opt(8, "Answers sampled per observation (G).", minimum=1)
    temperature: float = opt(
        1.0,
        "Sampling temperature of rollouts (> 0: training samples; greedy answers are for evaluation).",
        exclusive_minimum=0,
    )
    top_p: float = opt(0.9, "Nucleus sampling of rollouts (1.0 = off).", exclusive_minimum=0, maximum=1)
    top_k: int = opt(50, "Top-k sampling of rollouts (0 = off).", minimum=0)
    max_new_tokens: int = opt(
        768, "Longest answer sampled (tokens); the paper uses 768, 2048 for detection.", minimum=1
    )
    rollout_engine: str = opt(
        "auto",
        "What samples the rollouts (docs/rollouts.md): fast (prefill once, static KV cache, CUDA graphs), "
        "transformers (its generate; the same tokens), vllm (a colocated vLLM, when installed), auto (fast "
        "where the model allows, else transformers; on CUDA only an engine that has passed on a GPU: "
        "transformers until the GPU check passes fast).",
        choices=ROLLOUT_ENGINES,
    )

    filter_groups: bool = opt(
        False,
        "Dynamic sampling (DAPO; verl's algorithm.filter_groups.enable): drop groups whose G rewards are "
        "equal and sample further batches until prompts_per_step groups with differing rewards are kept.",
    )
    max_num_gen_batches: int = opt(
        10,
        "With filter_groups: most generation batches per step (verl's name); reaching it short of a full "
        "batch stops training with an error, as verl does. 0 = no limit.",
        minimum=0,
    )

    learning_rate: float = opt(
        1e-6, "AdamW learning rate (the paper: 1e-6 for 2B models).", exclusive_minimum=0
    )
    weight_decay: float = opt(0.0, "AdamW weight decay.", minimum=0)
    adam_beta1: float = opt(0.9, "AdamW beta1.", minimum=0, exclusive_maximum=1)
    adam_beta2: float = opt(0.999, "AdamW beta2.", minimum=0, exclusive_maximum=1)
    max_grad_norm: float = opt(1.0, "Gradient-norm clip (0 = off).", minimum=0)
    micro_batch_size: int = opt(
        0,
        "Completions per forward/backward; 0 = the whole batch (gradient accumulation otherwise).",
        minimum=0,
    )
    lr_scheduler: str = opt(
        "constant",
        "Learning-rate schedule: constant, linear or cosine (decay to 0 at total_steps).",
        choices=LR_SCHEDULERS,
    )
    warmup_steps: int = opt(0, "Linear warm-up steps of the learning rate.", minimum=0)

    lora_r: int = opt(0, "LoRA rank on the language model's projections (0 = full fine-tuning).", minimum=0)
    lora_alpha: int = opt(16, "LoRA scaling numerator (scale = alpha / r).", exclusive_minimum=0)
    lora_dropout: float = opt(0.0, "Dropout on the LoRA branch.", minimum=0, exclusive_maximum=1)
    lora_train_vision: bool = opt(False, "With LoRA, also train the whole vision tower (else it is frozen).")

    log_every: int = opt(1, "Write scalars to TensorBoard every N steps (0 = never).", minimum=0)
    log_samples_every: int = opt(
        20, "Write sample answers and a rendered image every N steps (0 = never).", minimum=0
    )
    save_every: int = opt(50, "Write a checkpoint every N steps (and at the end).", minimum=1)
    save_total_limit: int = opt(
        0,
        "Keep at most N checkpoints, deleting the earliest written (never the newest); 0 = keep all.",
        minimum=0,
    )
    eval_every: int = opt(0, "Evaluate greedy answers on held-out data every N steps (0 = never).", minimum=0)
    eval_samples: int = opt(100, "Held-out samples per evaluation.", minimum=1)
    eval_split: str = opt("test", "Split of the env's data used for evaluation.")

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked_value(f, hints[f.name], getattr(self, f.name)))
        if self.min_pixels > self.max_pixels:
            raise SetupError(
                f"min_pixels (--min-pixels) is {self.min_pixels} but max_pixels (--max-pixels) is "
                f"{self.max_pixels}: the smallest image area must not exceed the largest"
            )
        self.env_make_kwargs()  # an env_kwargs entry that contradicts an option fails now, not after loading

    def env_make_kwargs(self, **extra: Any) -> dict[str, Any]:
        """``gym.make`` keyword arguments: ``env_kwargs`` with the image frame of ``min_pixels`` /
        ``max_pixels``, so that the env scores answers in the frame the processor showed the model.

        The frame is set once, by these two options: an ``env_kwargs`` entry that disagrees is an error.
        """
        kwargs = {**self.env_kwargs, **extra}
        for name in ("min_pixels", "max_pixels"):
            ours = getattr(self, name)
            if name in kwargs and kwargs[name] != ours:
                raise SetupError(
                    f"env_kwargs sets {name}={kwargs[name]} but {_flag(name)} is {ours}: the env and the "
                    f"processor must resize images alike; set it once, with {_flag(name)}"
                )
            kwargs[name] = ours
        return kwargs

    @property
    def uses_reference(self) -> bool:
        """Whether the algorithm needs a frozen reference model (a KL term): none here; an algorithm's options
        with a KL weight say so (GRPO's and RLOO's ``beta != 0``). Read before the model loads."""
        return False

    def with_absolute_paths(self) -> TrainConfig:
        """A copy whose ``model`` and ``env_kwargs`` data paths (``root``, ``path``, ``*_file``, ``*_dir``,
        ...) are absolute where they name an existing local file or folder, so that ``--resume`` (and the
        β > 0 reference model, the LoRA base) find them from any working folder. A hub id stays as it is."""
        return dataclasses.replace(
            self, model=absolute_if_local(self.model), env_kwargs=_absolute_data_paths(self.env_kwargs)
        )

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SetupError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(cls.read_file(path))

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """The options a YAML file sets (only those: the rest stay whatever they were), each checked by name,
        type and range (errors name the file)."""
        import yaml

        if not Path(path).is_file():
            raise MissingFileError(f"--config {path}: no such file")
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise SetupError(f"{path}: expected a mapping of option: value")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise SetupError(f"{path}: unknown {cls.__name__} option(s): {', '.join(unknown)}")
        hints = _type_hints(cls)
        try:  # each value on its own now, so that the message names the file it came from
            return {name: _checked_value(fields[name], hints[name], value) for name, value in values.items()}
        except SetupError as error:
            raise SetupError(f"{path}: {error}") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@functools.cache
def _type_hints(config_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(config_cls)


def _checked_value(f: dataclasses.Field, kind: Any, value: Any) -> Any:
    """``value`` of option ``f`` if it has the option's type, choices and bounds, else :class:`SetupError`.

    A float option takes an int, and a number written as text: YAML 1.1 reads ``1e-6`` as a string."""
    where = f"{f.name} ({_flag(f.name)})"
    if kind is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SetupError(f"{where} must be a number; got {value!r}") from None
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SetupError(f"{where} must be a number; got {value!r}")
    if kind is int and not isinstance(value, int):
        raise SetupError(f"{where} must be a whole number; got {value!r}")
    if kind is float:
        value = float(value)
    if kind is bool and not isinstance(value, bool):
        raise SetupError(f"{where} must be true or false; got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise SetupError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
    if kind in (int, float):
        problem = bound_problem(value, **{b: f.metadata[b] for b in BOUNDS if f.metadata.get(b) is not None})
        if problem:
            raise SetupError(f"{where} {problem}; got {value!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One flag per field of ``config_cls``; defaults left as None so a file can supply them."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name]
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if kind is bool:
            parser.add_argument(
                _flag(f.name),
                type=_parse_bool,
                default=None,
                metavar="BOOL",
                help=f"{help_text} (default: {default})",
            )
        elif f.metadata.get("choices"):
            parser.add_argument(
                _flag(f.name),
                choices=f.metadata["choices"],
                default=None,
                help=f"{help_text} (default: {default})",
            )
        elif kind is dict:
            parser.add_argument(
                _flag(f.name),
                type=json_object,
                default=None,
                metavar="JSON",
                help=f"{help_text} (default: {json.dumps(default)})",
            )
        else:
            parser.add_argument(
                _flag(f.name), type=kind, default=None, help=f"{help_text} (default: {default})"
            )


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def config_from_args(
    config_cls: type, args: argparse.Namespace, file: str | None = None, base: dict[str, Any] | None = None
) -> Any:
    """Defaults < ``base`` (a resumed run's own config) < ``--config`` file < explicit flags."""
    values: dict[str, Any] = dict(base or {})
    if file:
        values.update(config_cls.read_file(file))
    for f in dataclasses.fields(config_cls):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return config_cls.from_dict(values)


# env_kwargs / data_kwargs keys that name local files or folders (perception_env.data's loaders)
_PATH_KEYS = ("root", "path")
_PATH_SUFFIXES = ("_file", "_dir", "_root", "_path")


def absolute_if_local(name: str) -> str:
    """``name`` made absolute if it names an existing local file or folder; else unchanged (a hub id)."""
    if not name:
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _absolute_data_paths(values: Any) -> Any:
    if not isinstance(values, dict):
        return values
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = _absolute_data_paths(value)
        elif isinstance(value, str) and (key in _PATH_KEYS or str(key).endswith(_PATH_SUFFIXES)):
            out[key] = absolute_if_local(value)
        else:
            out[key] = value
    return out


def check_output_folder(path: str | Path, flag: str) -> None:
    """Raise :class:`SetupError` unless ``path`` is a folder that exists or can be made, and is writable.

    Called before any work, so that an output that cannot be written fails at once, not after training."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise SetupError(f"{flag} {path}: is an existing file, not a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise SetupError(f"{flag} {path}: {existing} is a file, so the folder cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SetupError(f"{flag} {path}: {existing} is not writable")
