"""The tiny-model builder's architectures and size presets (agents/policies/tiny_model.py builds them).

Names and sizes only, without torch: the command line offers them (``make-tiny-model --preset``, its help
made of each preset's ``summary``) without loading torch, and the benchmarks read the same table.
Parameter counts are for arch="qwen2-vl"; Qwen2.5-VL is within a few percent.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHS = ("qwen2-vl", "qwen2.5-vl")


@dataclass(frozen=True)
class Preset:
    """One size of the tiny-model builder: the text model's and the ViT's widths, depths and heads."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]  # sums to head_dim / 2
    vit_width: int
    vit_depth: int
    vit_heads: int
    vit_intermediate: int  # Qwen2.5-VL's ViT MLP width; Qwen2-VL uses mlp_ratio = this / width
    vocab_size: int  # BPE vocabulary incl. the 256 byte symbols, before the special tokens
    max_position_embeddings: int
    # released sizes: the embedding has the real vocabulary's rows (ids past the local tokenizer are never
    # produced by it and decode to nothing), tied to the output head as in the released checkpoints
    model_vocab_size: int | None = None
    tie_word_embeddings: bool = False
    # Base of the text model's rotary angles. M-RoPE gives the image rows and columns the slowest
    # frequencies (theta ** (-i / (head_dim / 2)) for the last sections): at the released 1e6 and a small
    # head_dim, neighbouring rows differ by ~0.03 rad and columns by ~2e-4 rad, so a small model cannot
    # tell image positions apart and never learns where an object is (docs/learning-on-a-cpu.md).
    rope_theta: float = 1_000_000.0
    summary: str = ""  # its size and use, as the command line's help says it


PRESETS: dict[str, Preset] = {
    # head_dim 16 -> mrope sections sum to 8; theta 10: column angles 0.24 .. 0.13 rad per token
    "tiny": Preset(64, 2, 4, 2, 128, (2, 3, 3), 32, 2, 2, 64, 800, 4096, rope_theta=10.0,
                   summary="0.26M parameters, the demo"),
    # head_dim 32 -> mrope (4, 6, 6); theta 10: column angles 0.24 .. 0.12 rad per token
    "mini": Preset(128, 4, 4, 2, 512, (4, 6, 6), 64, 4, 4, 256, 800, 4096, rope_theta=10.0, summary="1.6M"),
    # head_dim 64 -> mrope (8, 12, 12): the released models' (16, 24, 24) for head_dim 128, halved
    "small": Preset(640, 12, 10, 2, 1792, (8, 12, 12), 384, 8, 6, 1536, 1024, 32768, rope_theta=10.0,
                    summary="~70M, speed benchmarks"),
    # Qwen2-VL-2B-Instruct's config.json (random weights): 2.2B parameters, head_dim 128
    "2b": Preset(1536, 28, 12, 2, 8960, (16, 24, 24), 1280, 32, 16, 5120, 1024, 32768, 151_936, True,
                 summary="Qwen2-VL-2B's size"),
    # Qwen2.5-VL-3B-Instruct's config.json: 3.8B parameters (ViT MLP width 3420)
    "3b": Preset(2048, 36, 16, 2, 11008, (16, 24, 24), 1280, 32, 16, 3420, 1024, 128_000, 151_936, True,
                 summary="Qwen2.5-VL-3B's size"),
}  # fmt: skip


def presets_help() -> str:
    """Each preset with its summary, e.g. ``"tiny (0.26M parameters, the demo), mini (1.6M), ..."``."""
    return ", ".join(f"{name} ({preset.summary})" for name, preset in PRESETS.items())
