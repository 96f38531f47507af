"""Shared fixtures: the released tokenizers, processors, and shrunk checkpoints built from the real configs."""

from __future__ import annotations

import pytest

from tests.real_files.support import MAX_PIXELS, MIN_PIXELS, MODELS, build_shrunk_checkpoint, real_dir


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every module here runs torch on one thread (tests/conftest.py says why)."""


@pytest.fixture(scope="session", params=MODELS)
def model_name(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def real_tokenizers() -> dict:
    """Each released tokenizer, loaded by transformers alone (no project code)."""
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(real_dir(name)) for name in MODELS}


@pytest.fixture(scope="session")
def real_image_processors() -> dict:
    """Each released image processor, loaded by transformers alone, with the paper's pixel bounds."""
    from transformers import AutoImageProcessor

    out = {}
    for name in MODELS:
        # the released files' own keys: a ``size=`` argument would be overridden by their max_pixels
        processor = AutoImageProcessor.from_pretrained(
            real_dir(name), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS
        )
        assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS)
        out[name] = processor
    return out


@pytest.fixture(scope="session")
def shrunk_dirs(tmp_path_factory) -> dict:
    """A shrunk, seeded checkpoint per released config (real vocabulary and files)."""
    root = tmp_path_factory.mktemp("shrunk")
    return {name: build_shrunk_checkpoint(name, root / name) for name in MODELS}


@pytest.fixture(scope="session")
def prompt_policies(shrunk_dirs) -> dict:
    """``QwenVLPolicy(model, load_processor(<released folder>, ...))``: the project's prompt building on
    the released processor files."""
    from transformers import AutoModelForImageTextToText

    from agents.policies.processor import load_processor
    from agents.policies.qwen_vl import QwenVLPolicy

    out = {}
    for name in MODELS:
        model = AutoModelForImageTextToText.from_pretrained(shrunk_dirs[name]).eval()
        processor = load_processor(real_dir(name), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        out[name] = QwenVLPolicy(model, processor)
    return out
