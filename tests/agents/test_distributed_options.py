"""GRPO's batch-scaled advantages, tempered log-probs, several iterations and micro-batches over 2 gloo ranks:
the parameters and the logged train/ metrics are those of one process on the whole batch."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.agents.support import checkpoint_weights, train_on_ranks

OPTIONS = ["--scale-rewards", "batch", "--temperature", "0.7", "--top-p", "1.0", "--num-iterations", "2",
           "--micro-batch-size", "3", "--loss-type", "grpo"]  # fmt: skip


def _train_metrics(run_dir) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = [tag for tag in events.Tags()["scalars"] if tag.startswith("train/")]
    return {tag: [e.value for e in events.Scalars(tag)] for tag in tags}


@pytest.mark.slow
def test_two_ranks_give_one_process_figures_with_the_grpo_options(tiny_model_dir, tmp_path):
    for name, ranks in (("one", 1), ("two", 2)):
        train_on_ranks(tiny_model_dir, tmp_path, name, ranks, *OPTIONS)
    one_weights, two_weights = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "two")
    start = load_file(f"{tiny_model_dir}/model.safetensors")
    assert max(float((one_weights[k] - start[k]).abs().max()) for k in start) > 1e-4  # training moved them
    for key in one_weights:  # Adam's first steps amplify the ranks' float-rounding differences near g = 0
        torch.testing.assert_close(two_weights[key], one_weights[key], atol=1e-5, rtol=1e-5, msg=key)
    one, two = _train_metrics(tmp_path / "one"), _train_metrics(tmp_path / "two")
    assert max(one["train/advantage_abs_mean"]) > 0 and max(one["train/kl"]) > 0  # some step had a signal
    assert one.keys() == two.keys()
    for tag in one:
        assert two[tag] == pytest.approx(one[tag], rel=1e-5, abs=1e-7), tag
