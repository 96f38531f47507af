"""Typed run configuration: one dataclass field per option, its help text beside it.

The same fields are the CLI flags (``--learning-rate 1e-5``), the keys of a
``--config file.yaml``, and the hyperparameter table logged to TensorBoard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def opt(default: Any, help: str, choices: tuple[str, ...] | None = None, **kwargs: Any) -> Any:
    """A config field with its help text (read by :func:`add_arguments`).

    ``choices``: the only values the option takes; checked when the config is built (flags, YAML or
    code alike), so a typo fails at start-up, not after the first generation.
    """
    metadata = {"help": help, "choices": choices, **kwargs}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


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
    dtype: str = opt("float32", "Model dtype: float32, bfloat16 or float16.",
                     choices=("float32", "bfloat16", "float16"))
    parallel: str = opt(
        "ddp",
        "Data-parallel strategy under torchrun: ddp (a replica per rank) or fsdp (FSDP2: parameters, "
        "gradients and optimiser state sharded over the ranks). Ignored in a single process.",
        choices=("ddp", "fsdp"),
    )
    activation_checkpointing: str = opt(
        "none",
        "Recompute activations in backward to save memory: none, vision (the ViT's blocks) or all (decoder "
        "layers too). The shared-prefix forward is kept either way.",
        choices=("none", "vision", "all"),
    )
    min_pixels: int = opt(
        3136, "Smallest image area (pixels) after the processor's resize; the env scores in the same frame."
    )
    max_pixels: int = opt(
        1_000_000, "Largest image area (pixels) after the processor's resize; the env scores in the same frame."
    )

    total_steps: int = opt(100, "Policy-update rounds (one rollout batch each).")
    prompts_per_step: int = opt(8, "Distinct observations per rollout batch (B).")
    group_size: int = opt(8, "Answers sampled per observation (G).")
    temperature: float = opt(1.0, "Sampling temperature of rollouts.")
    top_p: float = opt(0.9, "Nucleus sampling of rollouts (1.0 = off).")
    top_k: int = opt(50, "Top-k sampling of rollouts (0 = off).")
    max_new_tokens: int = opt(768, "Longest answer sampled (tokens); the paper uses 768, 2048 for detection.")

    learning_rate: float = opt(1e-6, "AdamW learning rate (the paper: 1e-6 for 2B models).")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    adam_beta1: float = opt(0.9, "AdamW beta1.")
    adam_beta2: float = opt(0.999, "AdamW beta2.")
    max_grad_norm: float = opt(1.0, "Gradient-norm clip (0 = off).")
    micro_batch_size: int = opt(
        0, "Completions per forward/backward; 0 = the whole batch (gradient accumulation otherwise)."
    )
    lr_scheduler: str = opt(
        "constant", "Learning-rate schedule: constant, linear or cosine (decay to 0 at total_steps).",
        choices=("constant", "linear", "cosine"),
    )
    warmup_steps: int = opt(0, "Linear warm-up steps of the learning rate.")

    lora_r: int = opt(0, "LoRA rank on the language model's projections (0 = full fine-tuning).")
    lora_alpha: int = opt(16, "LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = opt(0.0, "Dropout on the LoRA branch.")
    lora_train_vision: bool = opt(False, "With LoRA, also train the whole vision tower (else it is frozen).")

    log_every: int = opt(1, "Write scalars to TensorBoard every N steps.")
    log_samples_every: int = opt(20, "Write sample answers and a rendered image every N steps (0 = never).")
    save_every: int = opt(50, "Write a checkpoint every N steps (and at the end).")
    eval_every: int = opt(0, "Evaluate greedy answers on held-out data every N steps (0 = never).")
    eval_samples: int = opt(100, "Held-out samples per evaluation.")
    eval_split: str = opt("test", "Split of the env's data used for evaluation.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ValueError(f"{f.name} ({_flag(f.name)}) must be one of {', '.join(choices)}; got {value!r}")

    @property
    def agent_name(self) -> str:
        return "base"

    def env_make_kwargs(self, **extra: Any) -> dict[str, Any]:
        """``gym.make`` keyword arguments: ``env_kwargs`` with the image frame of ``min_pixels`` /
        ``max_pixels``, so that the env scores answers in the frame the processor showed the model.

        The frame is set once, by these two options: an ``env_kwargs`` entry that disagrees is an error.
        """
        kwargs = {**self.env_kwargs, **extra}
        for name in ("min_pixels", "max_pixels"):
            ours = getattr(self, name)
            if name in kwargs and kwargs[name] != ours:
                raise ValueError(
                    f"env_kwargs sets {name}={kwargs[name]} but {_flag(name)} is {ours}: the env and the "
                    f"processor must resize images alike; set it once, with {_flag(name)}"
                )
            kwargs[name] = ours
        return kwargs

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(cls.read_file(path))

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """The options a YAML file sets (only those: the rest stay whatever they were), checked by name."""
        import yaml

        with open(path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of option: value")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown {cls.__name__} option(s): {', '.join(unknown)}")
        return values


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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
                type=json.loads,
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
