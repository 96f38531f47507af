import pytest


@pytest.fixture(scope="session")
def eval_tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2-VL, built offline once per session."""
    import torch

    from agents.policies.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    return str(
        build_tiny_model(
            tmp_path_factory.mktemp("eval-tiny") / "model", arch="qwen2-vl", preset="tiny", seed=0
        )
    )
