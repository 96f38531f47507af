"""Data-parallel training (agents/distributed.py) on CPU: 2 processes over gloo, launched by torchrun.

The contract: the same global batch gives the same parameters as one process (within float tolerance),
with DDP or FSDP2, and a checkpoint resumes on another number of ranks.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from agents.checkpoints import read_state
from agents.distributed import Parallel
from tests.agents.support import STEPS, checkpoint_weights, launch, train_on_ranks


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    train_on_ranks(tiny_model_dir, out, "one", 1)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_give_the_parameters_of_one_process(strategy, tiny_model_dir, one_process):
    log = train_on_ranks(tiny_model_dir, one_process, strategy, 2, "--parallel", strategy)
    assert f"data-parallel: {strategy} over 2 ranks" in log
    held = log.split("holds ")[1].split(" parameters")[0]  # "<local> of <total>"
    local, total = (int(x.replace(",", "")) for x in held.split(" of "))
    assert local < 0.75 * total if strategy == "fsdp" else local == total  # FSDP2 really shards
    start = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    one = checkpoint_weights(one_process / "one")
    assert max(float((one[k] - start[k]).abs().max()) for k in one) > 1e-4  # training moved them
    _assert_same(checkpoint_weights(one_process / strategy), one)
    for step in range(1, STEPS + 1):  # and every checkpoint on the way, optimiser state included
        a = read_state(one_process / "one" / "checkpoints" / f"step-{step:06d}")
        b = read_state(one_process / strategy / "checkpoints" / f"step-{step:06d}")
        assert a["agent"]["optimizer"]["state"].keys() == b["agent"]["optimizer"]["state"].keys()
        for name, moments in a["agent"]["optimizer"]["state"].items():
            torch.testing.assert_close(
                moments["exp_avg"], b["agent"]["optimizer"]["state"][name]["exp_avg"], atol=1e-7, rtol=1e-4
            )
        assert (a["world_size"], b["world_size"]) == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("written_by, resumed_by", [("ddp", 1), ("one", 2)])
def test_a_checkpoint_resumes_on_another_number_of_ranks(written_by, resumed_by, tiny_model_dir, one_process):
    if written_by == "ddp" and not (one_process / "ddp").exists():
        train_on_ranks(tiny_model_dir, one_process, "ddp", 2)
    copy = one_process / f"resume-{written_by}-on-{resumed_by}"
    shutil.copytree(one_process / written_by, copy)
    shutil.rmtree(copy / "checkpoints" / f"step-{STEPS:06d}")
    extra = ["--parallel", "fsdp"] if resumed_by == 2 else []
    # nothing but --resume: the run's own options come from its checkpoint
    log = launch(["train", "--resume", str(copy / "checkpoints" / "step-000002"), *extra], resumed_by)
    assert "at step 2" in log
    _assert_same(checkpoint_weights(copy), checkpoint_weights(one_process / "one"))


def test_single_process_needs_no_process_group():
    parallel = Parallel.from_environment("cpu")
    assert (parallel.enabled, parallel.is_main, parallel.world_size) == (False, True, 1)
    assert list(parallel.shard(8)) == list(range(8))
    values = torch.tensor([1.0, 2.0])
    assert parallel.all_sum(values) is values and parallel.mean_metrics({"a": 1.0}) == {"a": 1.0}


def test_a_batch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        Parallel(rank=1, world_size=3).shard(8)
    assert list(Parallel(rank=1, world_size=4).shard(8)) == [2, 3]


def test_chunk_weights_add_up_to_the_whole_batch():
    from types import SimpleNamespace

    from agents.base import Agent

    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])  # 6 tokens in 3 answers
    chunks = [torch.tensor([0, 1]), torch.tensor([2])]
    one = SimpleNamespace(parallel=Parallel.single())
    assert Agent.chunk_weights(one, mask, chunks, token_level=False) == [2 / 3, 1 / 3]
    assert Agent.chunk_weights(one, mask, chunks, token_level=True) == [4 / 6, 2 / 6]
