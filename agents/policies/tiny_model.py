"""Build a small, randomly initialised Qwen2-VL / Qwen2.5-VL checkpoint fully offline.

The model is the real architecture (``Qwen2VLForConditionalGeneration`` or
``Qwen2_5_VLForConditionalGeneration`` built from a config), so every code path used with the released
checkpoints (processor, chat template, M-RoPE, generation, ``from_pretrained``) runs on it.
Only the sizes and the tokenizer differ:

- the tokenizer is a byte-level BPE trained here on a synthetic corpus of what the environments say and
  answer (prompts, colours, shapes, spatial words, JSON boxes, ``(x1,y1),(x2,y2)`` boxes, COCO names),
  with Qwen's pre-tokenizer regex, so every digit is its own token and numbers tokenise predictably;
- it carries the Qwen2-VL special tokens in Qwen's order and the Qwen2-VL chat template.

The architectures and sizes it builds: :mod:`agents.presets` (``ARCHS``, ``PRESETS``: tiny for the tests and
the CPU demo, mini, small for speed benchmarks, and the released 2B / 3B sizes).

``build_tiny_model`` is deterministic: the same (arch, preset, seed) gives bit-identical weights and the
same tokenizer (the tokenizer does not depend on the seed).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from agents.arguments import bound_problem
from agents.policies.qwen_vl import count_parameters
from agents.presets import ARCHS, PRESETS
from perception_env.formats import STOP_TOKENS
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

__all__ = [
    "ARCHS",
    "PRESETS",
    "QWEN2_VL_CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_model",
    "build_tokenizer",
    "count_parameters",
    "describe",
    "make_config",
    "synthetic_corpus",
]

# Qwen2-VL's special tokens, in the order (and relative ids) of the released tokenizer.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The chat template of Qwen2-VL-*-Instruct (Qwen2.5-VL uses the same one).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer: digits (\p{N}) are split one by one, so no number is ever a single token.
_QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


# ----------------------------------------------------------------------------------------------------
# Synthetic tokenizer corpus

_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray", "pink", "brown")
_SHAPES = ("circle", "square", "triangle", "cross", "star", "diamond", "rectangle", "ellipse", "hexagon")
_SPATIAL = (
    "left", "right", "above", "below", "top", "bottom", "leftmost", "rightmost", "topmost", "bottommost",
    "middle", "center", "next", "to", "of", "the", "near", "far", "largest", "smallest", "biggest",
    "first", "second", "third", "between", "inside", "outside", "on", "under", "over", "corner",
)  # fmt: skip
_COCO = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
_WORDS = (
    "the a an and or of in on at to is are was were be this that these those it its with for from by as "
    "image picture photo output all bounding box boxes bbox coordinates names name label how many what "
    "which where answer number count please locate every item category list set includes format json "
    "ocr text page read write object objects shape shapes colour color there here one two three four five "
    "six seven eight nine ten zero no yes none only each total small large big tiny thin thick line word "
    "you helpful assistant system user hello world quick brown fox jumps lazy dog lorem ipsum dolor sit "
    "amet paper table figure chapter section title abstract introduction method result results conclusion "
    "model data train test learning reinforcement policy reward vision language perception grounding "
    "detection counting referring expression region"
).split()
_WORDS = tuple(_WORDS)
_PROMPTS = (
    "Output all the bounding boxes of the {obj}",
    "Output the bounding box of the {ref} in the image.",
    "How many {colour} {shape}s are in the image? Answer with a number.",
    "How many {shape}s are there? Answer with a number.",
    "Please output bbox coordinates and names of {names}.",
    "Locate every item from the category list in the image and output the coordinates in JSON format. "
    "The category set includes {names}.",
    "OCR this image:",
    "Read the text in the image.",
)


def synthetic_corpus(n_lines: int = 4000, seed: int = 1234) -> list[str]:
    """Lines resembling the environments' prompts and answers, to train the tokenizer on.

    Independent of the model seed so that every tiny model shares one tokenizer.
    """
    lines: list[str] = []
    # every vocabulary item at least once, alone and with a leading space
    for w in _WORDS + _SPATIAL + _COLOURS + _SHAPES + _COCO:
        lines += [w, " " + w, w.capitalize(), w + "s"]
    # answer labels follow a special token or a quote with no space ("<|object_ref_start|>circle",
    # '"label": "circle"'): make the bare spellings frequent enough to become whole tokens
    for w in _SHAPES + _COLOURS:
        lines += [w, f'"{w}"'] * 12
    lines += [str(i) for i in range(1001)]
    lines.append("system\nYou are a helpful assistant.\nuser\nassistant\n")
    writer = _CorpusWriter(random.Random(seed))
    # each line one of seven kinds, drawn uniformly: prose two in seven
    kinds = (
        writer.prompt,
        writer.qwen_box_answer,
        writer.json_answer,
        writer.box_pair,
        writer.number,
        writer.prose,
        writer.prose,
    )
    for _ in range(n_lines):
        lines.append(kinds[writer.rng.randrange(len(kinds))]())
    return lines


class _CorpusWriter:
    """The corpus's lines of each kind, drawn from ``rng`` (the draws' order fixes the tokenizer)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def coord(self) -> int:
        return self.rng.randrange(0, 1000)

    def obj(self) -> str:
        return f"{self.rng.choice(_COLOURS)} {self.rng.choice(_SHAPES)}"

    def ref(self) -> str:
        return f"{self.obj()} {self.rng.choice(_SPATIAL)} of the {self.obj()}"

    def names(self) -> str:
        pool = list(_SHAPES) + list(_COCO)
        return ", ".join(self.rng.sample(pool, self.rng.randint(1, 6)))

    def prompt(self) -> str:
        rng = self.rng
        tmpl = rng.choice(_PROMPTS)
        return tmpl.format(
            obj=rng.choice([self.obj(), rng.choice(_SHAPES), rng.choice(_COCO)]),
            ref=self.ref(),
            colour=rng.choice(_COLOURS),
            shape=rng.choice(_SHAPES),
            names=self.names(),
        )

    def qwen_box_answer(self) -> str:
        rng, coord = self.rng, self.coord
        parts = [f"<|object_ref_start|>{rng.choice([self.obj(), rng.choice(_COCO)])}<|object_ref_end|>"]
        for _ in range(rng.randint(1, 3)):
            parts.append(f"<|box_start|>({coord()},{coord()}),({coord()},{coord()})<|box_end|>")
        return "".join(parts)

    def json_answer(self) -> str:
        rng, coord = self.rng, self.coord
        items = [
            {"bbox_2d": [coord(), coord(), coord(), coord()], "label": rng.choice(_SHAPES + _COCO)}
            for _ in range(rng.randint(1, 3))
        ]
        text = json.dumps(items)
        return f"```json\n{text}\n```" if rng.random() < 0.3 else text

    def box_pair(self) -> str:
        coord = self.coord
        return f"({coord()},{coord()}),({coord()},{coord()})"

    def number(self) -> str:
        return str(self.rng.randrange(0, 1001))

    def prose(self) -> str:
        rng = self.rng
        words = [rng.choice(_WORDS + _SPATIAL + _COLOURS + _SHAPES) for _ in range(rng.randint(3, 12))]
        line = " ".join(words)
        return line[0].upper() + line[1:] + rng.choice([".", ",", "!", "?", ":", ";", ""])


def build_tokenizer(vocab_size: int = 800):
    """Train a byte-level BPE on ``synthetic_corpus()`` and wrap it as a transformers ``Qwen2Tokenizer``.

    Special tokens take ids ``vocab_size .. vocab_size + 13`` in Qwen's order; eos is ``<|im_end|>`` (as in
    the Instruct checkpoints), pad and unk ``<|endoftext|>``. Returns the tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # strip the special tokens from the corpus: they are added as whole tokens below
    corpus = synthetic_corpus()
    for tok in SPECIAL_TOKENS:
        corpus = [line.replace(tok, "\n") for line in corpus]
    bpe.train_from_iterator(corpus, trainer=trainer)

    trained = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    base = max(vocab.values()) + 1
    for i, tok in enumerate(SPECIAL_TOKENS):
        vocab[tok] = base + i

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True
    )
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    for tok in SPECIAL_TOKENS:
        if tokenizer.convert_tokens_to_ids(tok) != vocab[tok]:
            raise RuntimeError(f"special token {tok} did not keep its id")
    return tokenizer


# ----------------------------------------------------------------------------------------------------
# Model


def make_config(
    arch: str, preset: str, vocab_size: int, token_ids: dict[str, int], rope_theta: float | None = None
):
    """The transformers config for ``arch`` ("qwen2-vl" | "qwen2.5-vl") at ``preset`` size.

    ``rope_theta``: the text model's rotary base (default: the preset's).
    """
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    head_dim = p.text_hidden // p.text_heads
    if 2 * sum(p.mrope_section) != head_dim:
        raise ValueError("mrope sections must sum to head_dim / 2")
    rope_theta = p.rope_theta if rope_theta is None else float(rope_theta)
    if not rope_theta > 1.0:  # theta <= 1 gives every frequency 1 rad per position (or NaN)
        raise ValueError(f"rope_theta must be a number > 1, got {rope_theta!r}")
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=p.text_hidden,
        intermediate_size=p.text_intermediate,
        num_hidden_layers=p.text_layers,
        num_attention_heads=p.text_heads,
        num_key_value_heads=p.text_kv_heads,
        max_position_embeddings=p.max_position_embeddings,
        max_window_layers=p.text_layers,
        use_sliding_window=False,
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": rope_theta,
            "mrope_section": list(p.mrope_section),
        },
        bos_token_id=token_ids["<|endoftext|>"],
        eos_token_id=token_ids["<|im_end|>"],
        pad_token_id=token_ids["<|endoftext|>"],
    )
    ids = dict(
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
    )
    if arch == "qwen2-vl":
        vision_config = dict(
            depth=p.vit_depth,
            embed_dim=p.vit_width,
            hidden_size=p.text_hidden,  # the merger's output: must equal the text hidden size
            mlp_ratio=p.vit_intermediate // p.vit_width,
            num_heads=p.vit_heads,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        return Qwen2VLConfig(
            text_config=text_config,
            vision_config=vision_config,
            tie_word_embeddings=p.tie_word_embeddings,
            **ids,
        )
    vision_config = dict(
        depth=p.vit_depth,
        hidden_size=p.vit_width,
        intermediate_size=p.vit_intermediate,
        num_heads=p.vit_heads,
        out_hidden_size=p.text_hidden,  # the merger's output: must equal the text hidden size
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,  # pixels: 112 / 14 / 2 = 4x4 merged tokens per attention window
        # full attention every 8th block, as the released models ([7, 15, 23, 31] at depth 32)
        fullatt_block_indexes=list(range(7, p.vit_depth, 8)) or [p.vit_depth - 1],
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=p.tie_word_embeddings, **ids
    )


def _parameter_breakdown(model: torch.nn.Module) -> dict[str, int]:
    inner = model.model
    vision = count_parameters(inner.visual)
    language = count_parameters(inner.language_model)
    total = count_parameters(model)
    return {"total": total, "vision": vision, "language": language, "lm_head": total - vision - language}


def build_model(
    arch: str = "qwen2-vl",
    preset: str = "tiny",
    seed: int = 0,
    tokenizer=None,
    rope_theta: float | None = None,
    image_mean: float | None = None,
    image_std: float | None = None,
):
    """Build (model, processor) in memory. Weights depend only on (arch, preset, seed); ``rope_theta``
    overrides the preset's rotary base (it changes no weight, only the angles).

    ``image_mean`` / ``image_std``: the processor's pixel normalisation, one value for the three
    channels on the 0..1 scale (default: the released OpenAI-CLIP values, about 0.46 / 0.27). A page of
    text is mostly light paper: with CLIP's values every patch of it is ~ +1.7, and a random ViT's
    features of a few dark strokes drown in that common offset (docs/learning-on-a-cpu.md); normalising
    by the page's own grey (0.92, 0.3) puts the paper at 0 and leaves the ink as the signal."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from agents.policies.processor import processor_class_for

    p = PRESETS[preset] if preset in PRESETS else None
    if p is None:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    if tokenizer is None:
        tokenizer = build_tokenizer(p.vocab_size)
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = make_config(
        arch,
        preset,
        vocab_size=max(len(tokenizer), p.model_vocab_size or 0),
        token_ids=token_ids,
        rope_theta=rope_theta,
    )
    model_cls = Qwen2VLForConditionalGeneration if arch == "qwen2-vl" else Qwen2_5_VLForConditionalGeneration
    # Initialise under a private RNG so that the caller's global torch RNG is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.eval()
    gen = model.generation_config
    gen.eos_token_id = [token_ids[t] for t in STOP_TOKENS]  # the tokens the envs' answer formats strip
    gen.pad_token_id = token_ids["<|endoftext|>"]
    gen.bos_token_id = token_ids["<|endoftext|>"]
    gen.do_sample = True
    gen.temperature = 1.0
    gen.top_p = 1.0
    gen.top_k = 0

    image_processor = Qwen2VLImageProcessorPil(
        # the envs' image bounds (the released checkpoints' processors allow up to 12,845,056 pixels)
        size={"shortest_edge": DEFAULT_MIN_PIXELS, "longest_edge": DEFAULT_MAX_PIXELS},
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    for name, value, bounds in (
        ("image_mean", image_mean, {}),
        ("image_std", image_std, {"exclusive_minimum": 0}),
    ):
        if value is not None:
            problem = bound_problem(float(value), **bounds)  # the CLI's --image-mean/--image-std rule
            if problem:
                raise ValueError(f"{name} {problem}, got {value!r}")
            setattr(image_processor, name, [float(value)] * 3)
    processor = processor_class_for(config.model_type)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE
    )
    return model, processor


def build_tiny_model(
    out_dir: str | Path,
    arch: str = "qwen2-vl",
    preset: str = "tiny",
    seed: int = 0,
    dtype: torch.dtype | None = None,
    rope_theta: float | None = None,
    image_mean: float | None = None,
    image_std: float | None = None,
) -> Path:
    """Build a random ``arch`` model at ``preset`` size; save model + processor to ``out_dir``.

    ``dtype``: the dtype of the saved weights (default float32; e.g. torch.bfloat16 halves a 2B model's
    8.8 GB on disk). ``rope_theta``: the text model's rotary base (default: the preset's, see ``PRESETS``).
    ``image_mean`` / ``image_std``: the processor's pixel normalisation (see :func:`build_model`).

    Offline and deterministic. The folder loads with ``QwenVLPolicy.from_pretrained(out_dir)`` or with
    ``AutoModelForImageTextToText.from_pretrained(out_dir)`` like any released checkpoint.
    Returns ``Path(out_dir)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_model(
        arch=arch, preset=preset, seed=seed, rope_theta=rope_theta, image_mean=image_mean, image_std=image_std
    )
    if dtype is not None:
        model.to(dtype)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "arch": arch,
        "preset": preset,
        "seed": seed,
        "rope_theta": model.config.text_config.rope_parameters["rope_theta"],
        "image_mean": processor.image_processor.image_mean,
        "image_std": processor.image_processor.image_std,
        "parameters": _parameter_breakdown(model),
    }
    (out / "tiny_model.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def describe(model_or_dir) -> dict:
    """Parameter counts (total / vision / language / lm_head) and sizes of a model or a saved folder."""
    if isinstance(model_or_dir, torch.nn.Module):
        model = model_or_dir
        info: dict = {}
    else:
        from transformers import AutoModelForImageTextToText

        folder = Path(model_or_dir)
        model = AutoModelForImageTextToText.from_pretrained(folder)
        info = {"disk_bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file())}
        meta = folder / "tiny_model.json"
        if meta.is_file():
            info.update({k: v for k, v in json.loads(meta.read_text()).items() if k != "parameters"})
    cfg = model.config
    info.update(
        model_type=cfg.model_type,
        parameters=_parameter_breakdown(model),
        vocab_size=cfg.text_config.vocab_size,
        hidden_size=cfg.text_config.hidden_size,
        num_hidden_layers=cfg.text_config.num_hidden_layers,
    )
    return info
