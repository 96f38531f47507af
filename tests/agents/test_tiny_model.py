"""The offline tiny-model builder: determinism, size, reload, tokenizer, processor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from agents.policies.processor import ImageOnlyQwen2_5_VLProcessor, ImageOnlyQwen2VLProcessor, load_processor
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import (
    ARCHS,
    PRESETS,
    SPECIAL_TOKENS,
    build_model,
    build_tiny_model,
    count_parameters,
    describe,
    make_config,
)

# ---------------------------------------------------------------------------------------------------
# Shared fixtures (tests/agents/test_policy.py imports them). The checkpoints are built once per session:
# the cache below also covers the copy of the fixture that pytest registers for the importing module.

_BUILT: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # At this size a second thread gains nothing, and on a 2-core machine with any other load it costs
    # 4-5x (OpenMP threads wait on a descheduled sibling): 19 s vs 85 s for these tests, measured.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict:
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        root = tmp_path_factory.mktemp("tiny_models")
        _BUILT[key] = {a: build_tiny_model(root / a, arch=a, preset="tiny", seed=0) for a in ARCHS}
    return _BUILT[key]


@pytest.fixture(scope="session", params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture()
def observations():
    """Two observations whose prompts differ in length and whose images differ in size (-> left padding)."""
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
            "prompt": "How many red squares are in the image? Answer with a number.",
        },
        {"image": rng.integers(0, 256, (56, 140, 3), dtype=np.uint8), "prompt": "OCR this image:"},
    ]


# ---------------------------------------------------------------------------------------------------

ANSWERS = [
    "<|object_ref_start|>circle<|object_ref_end|><|box_start|>(12,34),(56,78)<|box_end|>",
    "<|object_ref_start|>the red circle left of the blue square<|object_ref_end|>"
    "<|box_start|>(0,999),(1000,5)<|box_end|><|box_start|>(1,2),(3,4)<|box_end|>",
    '[{"bbox_2d": [12, 34, 56, 78], "label": "circle"}]',
    '```json\n[{"bbox_2d": [0, 7, 640, 480], "label": "traffic light"}, '
    '{"bbox_2d": [1, 2, 3, 4], "label": "star"}]\n```',
    "How many red squares are in the image? Answer with a number.",
    "Please output bbox coordinates and names of circle, square, triangle.",
    "OCR this image:",
    "The quick brown fox jumps over the lazy dog. Émile's café: 42 €!",
    "3",
    "17",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dirs):
    return load_processor(tiny_model_dirs["qwen2-vl"]).tokenizer


def test_build_is_deterministic_for_a_seed(arch):
    model_a, _ = build_model(arch=arch, preset="tiny", seed=0)
    model_b, _ = build_model(arch=arch, preset="tiny", seed=0)
    model_c, _ = build_model(arch=arch, preset="tiny", seed=1)
    state_a, state_b, state_c = model_a.state_dict(), model_b.state_dict(), model_c.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert any(not torch.equal(state_a[k], state_c[k]) for k in state_a if state_a[k].is_floating_point())


def test_build_leaves_global_rng_alone():
    before = torch.get_rng_state()
    build_model(arch="qwen2-vl", preset="tiny", seed=3)
    assert torch.equal(before, torch.get_rng_state())


def test_saved_folder_is_small_and_described(arch, tiny_model_dirs):
    folder = tiny_model_dirs[arch]
    info = describe(folder)
    assert info["disk_bytes"] < 3_000_000
    assert 100_000 < info["parameters"]["total"] < 1_000_000
    assert info["parameters"]["vision"] > 0 and info["parameters"]["language"] > 0
    assert info["arch"] == arch and info["preset"] == "tiny"
    assert not any(p.name.endswith((".bin", ".pt")) for p in folder.iterdir())


def test_reload_gives_bit_identical_logits(arch, tiny_model_dirs, observations):
    in_memory, _ = build_model(arch=arch, preset="tiny", seed=0)
    in_memory.eval()
    policy = QwenVLPolicy.from_pretrained(tiny_model_dirs[arch])
    assert type(policy.model) is type(in_memory)
    inputs = policy.encode_prompts(observations)
    with torch.no_grad():
        reloaded_logits = policy.model(**inputs).logits
        memory_logits = in_memory(**inputs).logits
    assert torch.equal(reloaded_logits, memory_logits)


def test_small_preset_size(arch):
    # count on the meta device: no memory, no init time
    from transformers import AutoModelForImageTextToText

    ids = {t: 1024 + i for i, t in enumerate(SPECIAL_TOKENS)}
    config = make_config(arch, "small", vocab_size=1024 + len(SPECIAL_TOKENS), token_ids=ids)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert 55e6 < count_parameters(model) < 85e6
    assert config.text_config.hidden_size == PRESETS["small"].text_hidden


@pytest.mark.parametrize("text", ANSWERS)
def test_tokenizer_round_trips_answer_formats(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) == text
    assert tokenizer.unk_token_id not in ids


def test_special_tokens_are_single_tokens(tokenizer):
    vocab = tokenizer.get_vocab()
    ids = [vocab[t] for t in SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))  # Qwen's order, contiguous
    for token in SPECIAL_TOKENS:
        assert tokenizer.encode(token, add_special_tokens=False) == [vocab[token]]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_digits_are_single_tokens_and_numbers_split_per_digit(tokenizer):
    digit_ids = [tokenizer.encode(d, add_special_tokens=False) for d in "0123456789"]
    assert all(len(ids) == 1 for ids in digit_ids)
    flat = [ids[0] for ids in digit_ids]
    for number in (0, 7, 42, 315, 999, 1000):
        ids = tokenizer.encode(str(number), add_special_tokens=False)
        assert ids == [flat[int(c)] for c in str(number)]


def test_prompts_tokenize_compactly(tokenizer):
    # the corpus covers the env vocabulary: prompts take about one token per word, not one per byte
    prompt = "Output the bounding box of the red circle left of the blue square in the image."
    assert len(tokenizer.encode(prompt, add_special_tokens=False)) <= 20


def test_chat_template_matches_qwen2_vl(tokenizer):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "OCR this image:"}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>OCR this image:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_processor_loads_without_torchvision_and_saves_standard_names(arch, tiny_model_dirs, tmp_path):
    folder = tiny_model_dirs[arch]
    saved = json.loads((folder / "processor_config.json").read_text())
    expected = "Qwen2VLProcessor" if arch == "qwen2-vl" else "Qwen2_5_VLProcessor"
    assert saved["processor_class"] == expected
    processor = load_processor(folder, min_pixels=3136, max_pixels=50_000)
    assert hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")
    assert dict(processor.image_processor.size) == {"shortest_edge": 3136, "longest_edge": 50_000}
    try:
        import torchvision  # noqa: F401
    except Exception:  # torchvision absent or broken: our image-only class is used
        assert isinstance(processor, (ImageOnlyQwen2VLProcessor, ImageOnlyQwen2_5_VLProcessor))
    # round trip
    processor.save_pretrained(tmp_path)
    again = load_processor(tmp_path)
    assert again.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    image = np.zeros((300, 200, 3), dtype=np.uint8)
    out = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=[image], return_tensors="pt"
    )
    t, h, w = out["image_grid_thw"][0].tolist()
    assert (
        h * w * 14 * 14 <= 50_000 and (out["input_ids"] == processor.image_token_id).sum() == t * h * w // 4
    )
    assert out["mm_token_type_ids"].sum() == t * h * w // 4


# ---------------------------------------------------------------------------------------------------
# Rotary angles: the small presets must let the language model tell image positions apart


def _position_frequencies(arch: str, preset: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns): radians per position of M-RoPE's height and width sections, from the config."""
    ids = {t: 1024 + i for i, t in enumerate(SPECIAL_TOKENS)}
    text = make_config(
        arch, preset, vocab_size=1024 + len(SPECIAL_TOKENS), token_ids=ids, **kwargs
    ).text_config
    rope = text.rope_parameters
    half = text.hidden_size // text.num_attention_heads // 2
    inv_freq = rope["rope_theta"] ** (-torch.arange(half, dtype=torch.float64) / half)  # [head_dim / 2]
    t, h, _ = rope["mrope_section"]
    return inv_freq[t : t + h], inv_freq[t + h :]


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_small_presets_rotary_angles_separate_image_rows_and_columns(arch, preset):
    # Neighbouring image tokens must differ by a tenth of a radian or more in some frequency of their
    # row (column) section. At the released rope_theta 1e6 a 16- or 64-dim head gets ~0.03 rad between
    # rows and ~2e-4 between columns: the tiny model never learnt where an object is (issue 13).
    rows, columns = _position_frequencies(arch, preset)
    assert rows.max() > 0.3 and columns.max() > 0.1
    # ... and the slowest column frequency does not wrap around within 30 columns (an 868-px image)
    assert columns.min() * 30 < 2 * math.pi


def test_released_size_presets_keep_the_released_rope_theta(arch):
    ids = {t: 1024 + i for i, t in enumerate(SPECIAL_TOKENS)}
    for preset in ("2b", "3b"):
        config = make_config(arch, preset, vocab_size=1024 + len(SPECIAL_TOKENS), token_ids=ids)
        assert config.text_config.rope_parameters["rope_theta"] == 1_000_000.0


def test_rope_theta_can_be_set_and_survives_a_reload(tmp_path):
    folder = build_tiny_model(tmp_path / "m", preset="tiny", seed=0, rope_theta=100.0)
    reloaded = QwenVLPolicy.from_pretrained(str(folder)).model
    assert reloaded.config.text_config.rope_parameters["rope_theta"] == 100.0
    assert json.loads((folder / "tiny_model.json").read_text())["rope_theta"] == 100.0
    rows, columns = _position_frequencies("qwen2-vl", "tiny", rope_theta=100.0)
    assert torch.allclose(columns, torch.tensor([100.0 ** (-k / 8) for k in (5, 6, 7)], dtype=torch.float64))
    # the helper's frequencies are the ones the model rotates by
    model_freq = reloaded.model.language_model.rotary_emb.inv_freq.double()
    assert torch.allclose(model_freq, torch.cat([model_freq[:2], rows, columns]), rtol=1e-6)


def test_the_processor_normalisation_can_be_set_and_survives_a_reload(tmp_path, observations):
    folder = build_tiny_model(tmp_path / "m", preset="tiny", seed=0, image_mean=0.92, image_std=0.3)
    assert json.loads((folder / "tiny_model.json").read_text())["image_mean"] == [0.92] * 3
    policy = QwenVLPolicy.from_pretrained(str(folder))
    assert list(policy.processor.image_processor.image_std) == [0.3] * 3
    # a pixel of grey 0.92 (234.6 / 255) becomes ~0; a black one (0 - 0.92) / 0.3
    page = np.full((56, 56, 3), 255, dtype=np.uint8)
    page[:28] = 0
    pixels = policy.encode_prompts([{"image": page, "prompt": "OCR this image:"}])["pixel_values"]
    assert pixels.max().item() == pytest.approx((1.0 - 0.92) / 0.3, abs=1e-4)
    assert pixels.min().item() == pytest.approx(-0.92 / 0.3, abs=1e-4)


@pytest.mark.parametrize("kwargs", [{"image_std": 0.0}, {"image_std": -1.0}, {"image_mean": float("nan")}])
def test_a_processor_normalisation_that_divides_by_zero_or_nan_is_refused_by_name(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build_model(preset="tiny", seed=0, **kwargs)


@pytest.mark.parametrize("theta", [1.0, 0.5, -10.0, float("nan")])
def test_rope_theta_out_of_range_is_refused_by_name(theta):
    ids = {t: 1024 + i for i, t in enumerate(SPECIAL_TOKENS)}
    with pytest.raises(ValueError, match="rope_theta"):
        make_config(
            "qwen2-vl", "tiny", vocab_size=1024 + len(SPECIAL_TOKENS), token_ids=ids, rope_theta=theta
        )


def test_make_tiny_model_offers_every_preset(tmp_path, capsys):
    from agents.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["make-tiny-model", str(tmp_path / "m"), "--preset", "no-such-preset"])
    assert exit_info.value.code == 2
    offered = capsys.readouterr().err.split("choose from ")[1].split(")")[0].replace("'", "").split(", ")
    assert set(offered) == set(PRESETS)


@pytest.mark.parametrize("theta", ["1", "0.5", "-10"])
def test_make_tiny_model_refuses_a_rope_theta_of_one_or_less_in_one_line(tmp_path, capsys, theta):
    from agents.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["make-tiny-model", str(tmp_path / "m"), "--rope-theta", theta])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--rope-theta" in error and theta in error
    assert not (tmp_path / "m").exists()


def test_make_tiny_model_sets_the_processor_normalisation(tmp_path):
    from agents.cli import main

    main(["make-tiny-model", str(tmp_path / "m"), "--image-mean", "0.92", "--image-std", "0.3"])
    from agents.policies.qwen_vl import QwenVLPolicy

    saved = QwenVLPolicy.from_pretrained(str(tmp_path / "m")).processor.image_processor
    assert list(saved.image_mean) == [0.92] * 3 and list(saved.image_std) == [0.3] * 3


@pytest.mark.parametrize(
    "flag, value", [("--image-std", "0"), ("--image-std", "-1"), ("--image-mean", "nan")]
)
def test_make_tiny_model_refuses_a_normalisation_that_divides_by_zero_or_nan(tmp_path, capsys, flag, value):
    from agents.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["make-tiny-model", str(tmp_path / "m"), flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "m").exists()
