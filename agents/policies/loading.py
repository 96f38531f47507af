"""A Qwen-VL model loaded from a folder or hub id: its dtype, device and activation checkpointing; its size."""

from __future__ import annotations

import os
from typing import Any

import torch

# the dtype names from_pretrained takes (agents/config.py DTYPES are the option's; the short ones for callers)
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}

# activation_checkpointing: False, "vision" (the ViT's blocks), True / "all" (and the decoder's layers)
ACTIVATION_CHECKPOINTING = (False, True, "all", "vision")


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """A dtype name as its ``torch.dtype``; a torch.dtype, None and ``"auto"`` pass as they are."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}, 'auto' or a torch.dtype"
        ) from None


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = "float32",
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
    activation_checkpointing: bool | str = False,
) -> torch.nn.Module:
    """The image-text model of ``name_or_path`` (as ``agents.model_folder.check_model_source`` returned it),
    on ``device``, in eval mode; with ``activation_checkpointing`` the vision tower's blocks recompute in
    backward (the decoder's layers are the policy's: ``shared_prefix.checkpointed_layers``)."""
    from transformers import AutoModelForImageTextToText

    if activation_checkpointing not in ACTIVATION_CHECKPOINTING:
        raise ValueError(
            f"activation_checkpointing must be False, True/'all' or 'vision', got {activation_checkpointing!r}"
        )
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), **kwargs)
    model.to(device)
    model.eval()
    if activation_checkpointing:
        # the ViT's blocks through transformers; decoder layers (True / "all") through
        # shared_prefix.checkpointed_layers, which, unlike transformers', keeps the shared-prefix cache
        visual = model.model.visual
        # transformers 5.x: activation_checkpointing_enable (gradient_checkpointing_enable deprecated)
        enable = (
            getattr(visual, "activation_checkpointing_enable", None) or visual.gradient_checkpointing_enable
        )
        enable({"use_reentrant": False})
    return model
