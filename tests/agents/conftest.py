import pytest
import torch


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2-VL built offline once per test session (the demo's starting point)."""
    from agents.policies.tiny_model import build_tiny_model

    torch.set_num_threads(1)  # 2 threads stall each other on a loaded 2-core machine
    return str(
        build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", arch="qwen2-vl", preset="tiny", seed=0)
    )
