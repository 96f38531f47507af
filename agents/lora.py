"""LoRA adapters (peft, through transformers' adapter integration) for a QwenVLPolicy.

    policy = QwenVLPolicy.from_pretrained("Qwen/Qwen2-VL-2B-Instruct")
    apply_lora(policy, r=8, alpha=16)      # before building the agent: it optimises what requires grad
    agent = GRPOAgent(policy, config, reference_model=lora_reference(policy))
    policy.save_pretrained(out)            # writes only the adapters (+ processor): megabytes, not gigabytes
    policy = load_lora_policy(out)         # base model named in adapter_config.json + the adapters

Why the transformers integration (``model.add_adapter``) rather than wrapping in a ``peft.PeftModel``:
``policy.model`` stays a ``Qwen2VLForConditionalGeneration`` with LoRA layers injected in place, so
generation, log-probs (which reach into ``model.model.language_model``), the Trainer's checkpoints and
``from_pretrained`` work unchanged; ``save_pretrained`` writes the adapters alone.

Adapters go on the *language model's* projections only: names are matched under ``language_model``
because Qwen2.5-VL's vision blocks also have ``gate_proj/up_proj/down_proj``. The vision tower is frozen
(``freeze_vision=True``, the usual choice) or trained in full (``freeze_vision=False``: peft's
``modules_to_save``, so its weights are saved with the adapters).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LANGUAGE_TARGET_MODULES",
    "apply_lora",
    "check_peft_version",
    "is_lora",
    "load_lora_policy",
    "lora_parameter_names",
    "lora_reference",
    "merge_lora",
]

# Qwen2 decoder layer: self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj.
LANGUAGE_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def check_peft_version() -> None:
    """Fail with both versions named if the installed peft is older than transformers requires.

    transformers' adapter integration checks it too, but only in the middle of ``add_adapter`` /
    ``load_adapter``, with a message that names neither the installed versions nor the fix.
    """
    from importlib.metadata import version

    from packaging.version import Version

    try:
        from transformers.integrations.peft import MIN_PEFT_VERSION
    except ImportError:  # a transformers without the constant: let it check on its own
        return
    installed = version("peft")
    if Version(Version(installed).base_version) < Version(MIN_PEFT_VERSION):
        raise ImportError(
            f"transformers {version('transformers')} needs peft >= {MIN_PEFT_VERSION} for LoRA, but peft "
            f"{installed} is installed: install the versions this project is tested with "
            "(pip install -c requirements/lock.txt ..., as scripts/setup.sh does) or a newer peft"
        )


def is_lora(model: torch.nn.Module) -> bool:
    """Whether ``model`` carries peft adapters (added by :func:`apply_lora` or loaded)."""
    return bool(getattr(model, "_hf_peft_config_loaded", False))


def lora_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the adapter parameters (``...lora_A...``, ``...lora_B...``)."""
    return [n for n, _ in model.named_parameters() if ".lora_A." in n or ".lora_B." in n]


def _language_model_pattern(names: Sequence[str]) -> str:
    # peft matches a str target_modules with re.fullmatch against each module's full name.
    alternatives = "|".join(re.escape(n) for n in names)
    return rf".*language_model\..*\.({alternatives})"


def apply_lora(
    policy: Any,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] = LANGUAGE_TARGET_MODULES,
    freeze_vision: bool = True,
) -> Any:
    """Add LoRA adapters to ``policy.model`` in place and freeze everything else; returns the policy.

    ``target_modules``: projection names inside the language model's layers (default: all seven).
    The adapter adds ``(alpha / r) * B @ A``; B starts at 0, so the model computes exactly what it
    did before until the first update.
    """
    from peft import LoraConfig

    model = policy.model
    if is_lora(model):
        raise ValueError("the policy already has LoRA adapters")
    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=_language_model_pattern(target_modules),
        modules_to_save=None if freeze_vision else ["visual"],
        bias="none",
    )
    check_peft_version()
    try:
        model.add_adapter(config)
    except ValueError as error:
        if "not found in the base model" not in str(error):  # any other cause is shown as it is
            raise
        raise ValueError(
            f"no module of the language model matched target_modules={list(target_modules)} ({error})"
        ) from error
    # add_adapter freezes the base weights; say so explicitly (and for the vision tower) all the same
    trainable = set(lora_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable or (not freeze_vision and ".modules_to_save." in name))
    return policy


def load_lora_policy(
    adapter_dir: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    *,
    is_trainable: bool = True,
    **from_pretrained_kwargs: Any,
) -> Any:
    """A QwenVLPolicy: the base model (default: the one named in ``adapter_config.json``) + saved adapters.

    ``is_trainable=True`` leaves the adapters trainable (resuming a run); False freezes them (evaluation).
    ``from_pretrained_kwargs`` go to ``QwenVLPolicy.from_pretrained`` (dtype, device, pixels).
    """
    from agents.policies.qwen_vl import QwenVLPolicy

    adapter_dir = Path(adapter_dir)
    if base_model is None:
        base_model = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    policy = QwenVLPolicy.from_pretrained(base_model, **from_pretrained_kwargs)
    check_peft_version()
    policy.model.load_adapter(str(adapter_dir), is_trainable=is_trainable)
    if not is_trainable:
        policy.model.requires_grad_(False)
    return policy


def _strip_adapters(model: torch.nn.Module, merge: bool) -> torch.nn.Module:
    """Replace every LoRA layer by its base layer (merging the adapter into it first if ``merge``)."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    replacements = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if merge:
                module.merge()
            replacements.append((name, module.get_base_layer()))
        elif isinstance(module, ModulesToSaveWrapper):
            trained = module.modules_to_save[module.active_adapters[0]]
            replacements.append((name, trained if merge else module.original_module))
    for name, replacement in replacements:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
    model._hf_peft_config_loaded = False
    model.__dict__.pop("peft_config", None)
    return model


def merge_lora(policy: Any) -> Any:
    """Fold the adapters into the base weights: a plain model again (e.g. to serve with vLLM); in place."""
    if is_lora(policy.model):
        _strip_adapters(policy.model, merge=True)
    return policy


def lora_reference(policy: Any) -> torch.nn.Module:
    """The frozen starting model for the KL term, sharing the policy's base weights (no copy of them).

    A structural copy of ``policy.model`` whose LoRA layers are replaced by their base layers; every
    parameter tensor is the policy's own (frozen) one, so it costs no weight memory, and stays the
    starting model because base weights never train. Pass it as ``reference_model=`` to an agent.
    """
    model = policy.model
    if not is_lora(model):
        raise ValueError("lora_reference needs a policy with LoRA adapters (apply_lora first)")
    adapters = set(lora_parameter_names(model))
    base = [p for n, p in model.named_parameters() if n not in adapters and ".modules_to_save." not in n]
    if any(p.requires_grad for p in base):
        raise ValueError("the policy's base weights are trainable: the reference would move with them")
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    reference = _strip_adapters(copy.deepcopy(model, memo=shared), merge=False)
    return reference.eval()
