"""The ``2b`` / ``3b`` presets of agents/policies/tiny_model.py are the released architectures.

Only configs are built (no 2B model). The preset config is made as ``build_model(tokenizer=<released
tokenizer>)`` makes it, and compared field by field with the released config.json as transformers reads it.
"""

from __future__ import annotations

import pytest

from tests.real_files.support import (
    QWEN2_VL,
    QWEN25_VL,
    SPECIAL_IDS,
    real_dir,
    require_real_files,
    vision_template,
)

require_real_files()

from transformers import AutoConfig, GenerationConfig  # noqa: E402

from agents.policies.tiny_model import PRESETS, QWEN2_VL_CHAT_TEMPLATE, SPECIAL_TOKENS, make_config  # noqa: E402

CASES = [("2b", "qwen2-vl", QWEN2_VL), ("3b", "qwen2.5-vl", QWEN25_VL)]

TEXT_FIELDS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "rms_norm_eps",
    "max_position_embeddings",
    "attention_dropout",
    "use_sliding_window",
    "sliding_window",
    "layer_types",
    "bos_token_id",
    "eos_token_id",
)
VISION_FIELDS = {
    "qwen2-vl": (
        "model_type",
        "depth",
        "embed_dim",
        "hidden_size",
        "mlp_ratio",
        "num_heads",
        "hidden_act",
        "in_channels",
        "patch_size",
        "spatial_merge_size",
        "temporal_patch_size",
        "rope_parameters",
    ),
    "qwen2.5-vl": (
        "model_type",
        "depth",
        "hidden_size",
        "intermediate_size",
        "num_heads",
        "out_hidden_size",
        "hidden_act",
        "in_channels",
        "patch_size",
        "spatial_merge_size",
        "temporal_patch_size",
        "window_size",
        "fullatt_block_indexes",
        "tokens_per_second",
        "rope_parameters",
    ),
}
TOP_FIELDS = (
    "model_type",
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "tie_word_embeddings",
)


def configs(preset, arch, name, tokenizers):
    tokenizer = tokenizers[name]
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}  # as build_model does
    ours = make_config(
        arch,
        preset,
        vocab_size=max(len(tokenizer), PRESETS[preset].model_vocab_size or 0),
        token_ids=token_ids,
    )
    return ours, AutoConfig.from_pretrained(real_dir(name))


@pytest.mark.parametrize("preset,arch,name", CASES)
def test_preset_config_equals_released_config(preset, arch, name, real_tokenizers):
    """Every architecture field, text and vision, and the special-token ids agree."""
    ours, real = configs(preset, arch, name, real_tokenizers)
    for field in TOP_FIELDS:
        assert getattr(ours, field) == getattr(real, field), field
    for field in TEXT_FIELDS:
        assert getattr(ours.text_config, field) == getattr(real.text_config, field), field
    ours_rope, real_rope = ours.text_config.rope_parameters, real.text_config.rope_parameters
    for key in ("rope_type", "rope_theta", "mrope_section"):
        assert ours_rope[key] == real_rope[key], key
    for field in VISION_FIELDS[arch]:
        assert getattr(ours.vision_config, field) == getattr(real.vision_config, field), field


@pytest.mark.parametrize("preset,arch,name", CASES)
def test_preset_known_sizes(preset, arch, name, real_tokenizers):
    """The released sizes, as numbers: head_dim 128, M-RoPE (16, 24, 24), real vocabulary, tied head."""
    ours, _ = configs(preset, arch, name, real_tokenizers)
    text = ours.text_config
    assert text.hidden_size // text.num_attention_heads == 128
    assert text.rope_parameters["mrope_section"] == [16, 24, 24] and text.rope_parameters["rope_theta"] == 1e6
    assert text.vocab_size == 151_936 and ours.tie_word_embeddings is True
    expected = {"2b": (1536, 28, 12, 2, 8960, 32_768), "3b": (2048, 36, 16, 2, 11008, 128_000)}[preset]
    assert (
        text.hidden_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.num_key_value_heads,
        text.intermediate_size,
        text.max_position_embeddings,
    ) == expected
    assert ours.image_token_id == SPECIAL_IDS["<|image_pad|>"] == 151655
    assert (ours.vision_start_token_id, ours.vision_end_token_id, ours.video_token_id) == (
        151652,
        151653,
        151656,
    )
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (151643, 151645, 151643)
    if arch == "qwen2-vl":
        assert (ours.vision_config.depth, ours.vision_config.embed_dim, ours.vision_config.hidden_size) == (
            32,
            1280,
            1536,
        )
    else:
        v = ours.vision_config
        assert (v.depth, v.hidden_size, v.intermediate_size, v.out_hidden_size) == (32, 1280, 3420, 2048)
        assert (v.window_size, v.fullatt_block_indexes) == (112, [7, 15, 23, 31])


@pytest.mark.parametrize("preset,arch,name", CASES)
def test_preset_pad_and_stop_ids_match_released_generation_config(preset, arch, name, real_tokenizers):
    """pad is not in the released config.json: it is in generation_config.json (151643), as the preset sets
    it; the released stop ids are <|im_end|> and <|endoftext|>, the ones build_model and the policy use."""
    ours, _ = configs(preset, arch, name, real_tokenizers)
    generation = GenerationConfig.from_pretrained(real_dir(name))
    assert ours.text_config.pad_token_id == generation.pad_token_id == 151643
    assert ours.text_config.bos_token_id == generation.bos_token_id
    assert generation.eos_token_id == [SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]]


@pytest.mark.parametrize("name", [QWEN2_VL, QWEN25_VL])
def test_tiny_model_special_tokens_and_template_are_the_released_ones(name, real_tokenizers):
    """SPECIAL_TOKENS are the released specials in id order (151643 + i); the tiny models' chat template
    is the released vision template, character for character."""
    tokenizer = real_tokenizers[name]
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(151643, 151643 + 14))
    assert QWEN2_VL_CHAT_TEMPLATE == vision_template(name)
