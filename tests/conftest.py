"""Fixtures every test folder shares: the offline tiny models, and torch on one thread."""

import pytest


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, str]:
    """A tiny random Qwen2-VL and Qwen2.5-VL (the demo's preset, seed 0), built offline once per session."""
    from agents.policies.tiny_model import ARCHS, build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: str(build_tiny_model(root / arch, arch=arch, preset="tiny", seed=0)) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_dirs) -> str:
    """The tiny Qwen2-VL of :func:`tiny_model_dirs`."""
    return tiny_model_dirs["qwen2-vl"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: at the tiny models' size a second thread gains nothing and, on a
    loaded 2-core machine, costs 4-5x (OpenMP threads wait on a descheduled sibling)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
