"""Where the released Qwen-VL files live, what they are, and the helpers the tests here share.

Every test module here calls :func:`require_real_files` at import: without the fixture folder the module is
skipped, with the reason printed (and listed by ``-ra``), never silently.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

REAL_ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "qwen-vl-real"
QWEN2_VL = "Qwen2-VL-2B-Instruct"
QWEN25_VL = "Qwen2.5-VL-3B-Instruct"
MODELS = (QWEN2_VL, QWEN25_VL)

# The paper's image-area bounds: the env's and QwenVLPolicy.from_pretrained's defaults.
MIN_PIXELS = 3136
MAX_PIXELS = 1_000_000

# The released special tokens and their ids (tests/fixtures/qwen-vl-real/PROVENANCE.md, added_tokens.json).
SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
IMAGE_PAD_ID = SPECIAL_IDS["<|image_pad|>"]
PAD_ID = SPECIAL_IDS["<|endoftext|>"]
IM_END_ID = SPECIAL_IDS["<|im_end|>"]


def require_real_files() -> None:
    """Skip the calling test module (at import) when the released files are not in the tree."""
    missing = [name for name in MODELS if not (REAL_ROOT / name / "chat_template.json").is_file()]
    if missing:
        reason = f"released Qwen-VL files not found: {', '.join(str(REAL_ROOT / m) for m in missing)}"
        print(f"SKIP tests/real_files: {reason}")
        pytest.skip(reason, allow_module_level=True)


def real_dir(name: str) -> Path:
    return REAL_ROOT / name


def vision_template(name: str) -> str:
    """The vision chat template, read straight from the released chat_template.json."""
    return json.loads((real_dir(name) / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]


def env_class(env_id: str):
    """The env class registered under ``env_id`` (without building its dataset)."""
    import perception_env

    module, _, name = perception_env.ENV_IDS[env_id].partition(":")
    return getattr(importlib.import_module(module), name)


def env_format_cases() -> list[tuple[str, str]]:
    """Every (env id, answer format) pair the envs accept."""
    import perception_env

    return [(env_id, fmt) for env_id in sorted(perception_env.ENV_IDS) for fmt in env_class(env_id).formats]


def make_env(env_id: str, fmt: str, **kwargs):
    """``gym.make`` with small images (difficulty easy) and the paper's pixel bounds."""
    import gymnasium as gym

    import perception_env  # noqa: F401  (registers the ids)

    kwargs.setdefault("difficulty", "easy")
    return gym.make(env_id, answer_format=fmt, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, **kwargs)


def shrunk_config(name: str) -> dict:
    """The released config.json with small sizes; everything else (vocabulary, special-token ids, rope
    theta, tied embeddings, patch/merge sizes, window settings) as released.

    Text: hidden 64, 2 layers, 4 heads of 16 (M-RoPE sections (2, 3, 3) = the released (16, 24, 24) / 8,
    summing to head_dim / 2), 2 kv heads. Vision: width 32, 2 heads; Qwen2-VL's merger outputs the text
    hidden size (its vision ``hidden_size``), Qwen2.5-VL's ``out_hidden_size``.
    """
    config = json.loads((real_dir(name) / "config.json").read_text(encoding="utf-8"))
    config.update(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_window_layers=2,
    )
    config["rope_scaling"] = {**config["rope_scaling"], "mrope_section": [2, 3, 3]}
    vision = config["vision_config"]
    if config["model_type"] == "qwen2_vl":
        vision.update(depth=1, embed_dim=32, num_heads=2, hidden_size=64)
    else:
        vision.update(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            fullatt_block_indexes=[1],
        )
    return config


def build_shrunk_checkpoint(name: str, out: Path, seed: int = 0) -> Path:
    """A randomly initialised (seeded) model of the shrunk released config, saved with every released
    tokenizer / template / preprocessor / generation file of ``name`` (copied as they are)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(shrunk_config(name), indent=2), encoding="utf-8")
    config = AutoConfig.from_pretrained(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config)
    model.save_pretrained(out)
    for path in real_dir(name).iterdir():
        if path.name != "config.json":
            shutil.copyfile(path, out / path.name)  # the released generation_config.json too
    return out
