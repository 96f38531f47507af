"""Fixtures of the agents' tests: one torch thread, both architectures, policies and observations."""

import numpy as np
import pytest

from agents.policies.tiny_model import ARCHS


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every module here runs torch on one thread (tests/conftest.py says why)."""


@pytest.fixture(scope="session", params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def policies(tiny_model_dirs) -> dict:
    """A QwenVLPolicy per architecture, loaded once per module."""
    from agents.policies.qwen_vl import QwenVLPolicy

    return {a: QwenVLPolicy.from_pretrained(d, dtype="float32") for a, d in tiny_model_dirs.items()}


@pytest.fixture()
def policy(policies, arch):
    return policies[arch]


@pytest.fixture()
def observations() -> list[dict]:
    """Two observations whose prompts differ in length and whose images differ in size (-> left padding)."""
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
            "prompt": "How many red squares are in the image? Answer with a number.",
        },
        {"image": rng.integers(0, 256, (56, 140, 3), dtype=np.uint8), "prompt": "OCR this image:"},
    ]
