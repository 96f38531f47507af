"""Checkpoints and --resume: durable atomic writes, incomplete folders skipped, damaged files named,
branches continued, the newest kept within --save-total-limit, paths that resolve from any folder."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import perception_env  # noqa: F401
from agents.cli import main
from agents.config import SetupError
from agents.trainer import (
    LATEST_FILE,
    RUN_FILE,
    STATE_FILE,
    CheckpointWarning,
    latest_checkpoint,
    prune_checkpoints,
)
from tests.agents.support import train_args

ENV_KWARGS = {"difficulty": "easy", "answer_format": "number"}


def _fake_checkpoint(
    run: Path, step: int, saved_at: float | None = None, weights: bool = True, state: bool = True
) -> Path:
    """A checkpoint folder with the files the checks look for (their content is not read)."""
    folder = run / "checkpoints" / f"step-{step:06d}"
    (folder / "policy").mkdir(parents=True)
    if state:
        (folder / STATE_FILE).write_bytes(b"state")
    if weights:
        (folder / "policy" / "model.safetensors").write_bytes(b"weights")
    if saved_at is not None:
        (folder / RUN_FILE).write_text(json.dumps({"config": {}, "saved_at": saved_at}))
    return folder


@pytest.fixture(scope="module")
def two_step_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A real run with checkpoints step-000001 and step-000002 (copy it before changing it)."""
    out = tmp_path_factory.mktemp("checkpoints")
    main(train_args(tiny_model_dir, out, "run", "--total-steps", "2", "--save-every", "1"))
    return out / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


# ------------------------------------------------------------------------------ which checkpoint
def test_an_empty_or_incomplete_step_folder_is_skipped_with_a_warning(tmp_path):
    run = tmp_path / "run"
    complete = _fake_checkpoint(run, 2)
    (run / "checkpoints" / "step-000009").mkdir()  # killed before anything was written
    _fake_checkpoint(run, 7, weights=False)  # killed between the state and the weights
    _fake_checkpoint(run, 8, state=False)
    with pytest.warns(CheckpointWarning) as caught:
        assert latest_checkpoint(run) == complete
    skipped = " ".join(str(w.message) for w in caught)
    assert all(f"step-00000{n}" in skipped for n in (7, 8, 9)) and "no policy weights" in skipped


def test_an_incomplete_checkpoint_named_explicitly_says_what_it_lacks(tmp_path):
    folder = _fake_checkpoint(tmp_path / "run", 3, weights=False)
    lacks = re.escape(f"{folder}: not a complete checkpoint (no policy weights")
    with pytest.raises(FileNotFoundError, match=lacks):
        latest_checkpoint(folder)
    with pytest.raises(FileNotFoundError, match="no such run or checkpoint folder"):
        latest_checkpoint(tmp_path / "absent")


def test_the_pointer_picks_the_branch_and_a_stale_pointer_falls_back(tmp_path):
    run = tmp_path / "run"
    for step in (2, 3, 4):
        _fake_checkpoint(run, step)
    assert latest_checkpoint(run).name == "step-000004"  # no pointer: the highest step
    (run / LATEST_FILE).write_text(json.dumps({"checkpoint": "step-000003"}))
    assert latest_checkpoint(run).name == "step-000003"
    (run / LATEST_FILE).write_text(json.dumps({"checkpoint": "step-000011"}))
    with pytest.warns(CheckpointWarning, match="names step-000011, which is missing or incomplete"):
        assert latest_checkpoint(run).name == "step-000004"


def test_save_total_limit_deletes_the_earliest_written_never_the_newest(tmp_path):
    run = tmp_path / "run"
    # an old run went to step 6; a branch resumed at step 2 then wrote step 3 (written last)
    for step, saved_at in ((2, 10.0), (4, 20.0), (6, 30.0), (3, 40.0)):
        _fake_checkpoint(run, step, saved_at=saved_at)
    newest = run / "checkpoints" / "step-000003"
    assert prune_checkpoints(run / "checkpoints", 0, keep=newest) == []  # 0 = keep all
    deleted = prune_checkpoints(run / "checkpoints", 2, keep=newest)
    assert [p.name for p in deleted] == ["step-000002", "step-000004"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    prune_checkpoints(run / "checkpoints", 1, keep=newest)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003"]


def test_save_total_limit_in_a_run(tiny_model_dir, tmp_path):
    main(
        train_args(
            tiny_model_dir,
            tmp_path,
            "run",
            "--total-steps",
            "4",
            "--save-every",
            "1",
            "--save-total-limit",
            "2",
        )
    )
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000003", "step-000004"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["save_total_limit"] == 2


# ------------------------------------------------------------------------------ branches
def test_resume_after_a_branch_continues_the_branch(two_step_run, tmp_path, capsys):
    run = _copy(two_step_run, tmp_path)
    main(["train", "--resume", str(run), "--total-steps", "4", "--save-every", "1"])  # the old run: 3, 4
    # a branch from step 1 with another learning rate, stopped after its step 2 (as if killed)
    with pytest.warns(CheckpointWarning, match="replaces step-000002, step-000003, step-000004"):
        main(
            [
                "train", "--resume", str(run / "checkpoints" / "step-000001"), "--learning-rate", "0.5",
                "--total-steps", "2",
            ]
        )  # fmt: skip
    capsys.readouterr()
    with pytest.warns(CheckpointWarning, match="replaces step-000003, step-000004"):  # the old run's, later
        main(["train", "--resume", str(run), "--total-steps", "3"])
    assert re.search(r"resumed from .*step-000002 at step 2", capsys.readouterr().out)
    step3 = json.loads((run / "checkpoints" / "step-000003" / RUN_FILE).read_text())
    assert step3["config"]["learning_rate"] == 0.5  # the branch's option, not the old run's 1e-6
    # the lineage: the branch started at step 1, and was continued from its step 2
    assert [(Path(r["checkpoint"]).name, r["step"]) for r in step3["resumed_from"]] == [
        ("step-000001", 1),
        ("step-000002", 2),
    ]
    assert json.loads((run / LATEST_FILE).read_text()) == {"checkpoint": "step-000003"}


def test_a_new_run_into_a_run_folder_with_checkpoints_warns(two_step_run, tiny_model_dir, tmp_path):
    run = _copy(two_step_run, tmp_path)
    with pytest.warns(CheckpointWarning, match="already holds checkpoints up to step-000002"):
        main(train_args(tiny_model_dir, run.parent, "run", "--total-steps", "1"))


# ------------------------------------------------------------------------------ damaged files
def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("file", [STATE_FILE, "policy/model.safetensors", RUN_FILE])
def test_a_damaged_checkpoint_file_is_named_before_anything_loads(file, two_step_run, tmp_path, monkeypatch):
    from agents.policies.qwen_vl import QwenVLPolicy

    run = _copy(two_step_run, tmp_path)
    damaged = run / "checkpoints" / "step-000002" / file
    _cut(damaged)
    monkeypatch.setattr(QwenVLPolicy, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as exited:
        main(["train", "--resume", str(run), "--total-steps", "3"])
    message = str(exited.value.code)
    assert str(damaged) in message and "\n" not in message


def test_an_optimiser_state_that_does_not_fit_names_its_file(two_step_run, tmp_path):
    run = _copy(two_step_run, tmp_path)
    with pytest.raises(SystemExit) as exited:  # LoRA now: other trained weights than the saved Adam moments
        main(["train", "--resume", str(run), "--total-steps", "3", "--lora-r", "4"])
    state = run / "checkpoints" / "step-000002" / STATE_FILE
    assert f"{state}: its optimiser state does not fit this run" in str(exited.value.code)


def test_a_damaged_state_file_is_named_when_read(tmp_path):
    from agents.trainer import read_state

    path = tmp_path / STATE_FILE
    torch.save({"step": 1, "agent": {}, "rng": {}, "config": {}}, path)
    assert read_state(path)["step"] == 1
    _cut(path)
    with pytest.raises(SetupError, match=re.escape(f"{path}: cannot be read")):
        read_state(path)


# ------------------------------------------------------------------------------ durable writes
def test_files_and_folders_reach_the_disk_before_the_rename(tiny_model_dir, tmp_path, monkeypatch):
    import agents.trainer as trainer_module
    from tests.agents.support import one_step_trainer

    events: list[tuple[str, str]] = []
    fsync, replace = trainer_module._fsync, os.replace
    monkeypatch.setattr(trainer_module, "_fsync", lambda p: (events.append(("fsync", str(p))), fsync(p))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", f"{a} -> {b}")), replace(a, b))[1]
    )
    trainer = one_step_trainer(tiny_model_dir, tmp_path / "run")
    trainer.step = 5
    final = trainer.save_checkpoint()
    tmp = final.with_name(".tmp-000005")
    rename = events.index(("replace", f"{tmp} -> {final}"))
    flushed = {path for kind, path in events[:rename] if kind == "fsync"}
    written = {str(tmp / p.relative_to(final)) for p in final.rglob("*")}
    assert written and written <= flushed and str(tmp) in flushed
    assert ("fsync", str(final.parent)) in events[rename:]  # the rename itself
    assert json.loads((tmp_path / "run" / LATEST_FILE).read_text()) == {"checkpoint": "step-000005"}


# ------------------------------------------------------------------------------ paths
def test_a_relative_model_is_stored_absolute_and_resumes_from_elsewhere(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_model_dir, work / "tiny")
    monkeypatch.chdir(work)
    args = train_args("tiny", Path("runs"), "rel", "--total-steps", "1")
    args[args.index("--beta") + 1] = "0.04"  # the reference model is loaded again from --model on resume
    main(args)
    run_file = work / "runs" / "rel" / "checkpoints" / "step-000001" / RUN_FILE
    saved = json.loads(run_file.read_text())["config"]
    assert saved["model"] == str((work / "tiny").resolve())
    monkeypatch.chdir(tmp_path)
    main(["train", "--resume", str(work / "runs" / "rel"), "--total-steps", "2"])
    assert "resumed from" in capsys.readouterr().out
    assert (work / "runs" / "rel" / "checkpoints" / "step-000002").is_dir()


def test_data_paths_in_env_kwargs_are_stored_absolute(tmp_path, monkeypatch):
    from agents.grpo.config import GRPOConfig

    (tmp_path / "data" / "coco").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = GRPOConfig(
        model="Qwen/Qwen2-VL-2B-Instruct",
        env_kwargs={
            "source": "coco",
            "difficulty": "easy",
            "data_kwargs": {"root": "data/coco", "image_dir": "absent"},
        },
    )
    absolute = config.with_absolute_paths()
    assert absolute.model == "Qwen/Qwen2-VL-2B-Instruct"  # a hub id stays as it is
    expected = {"root": str(tmp_path / "data" / "coco"), "image_dir": "absent"}  # absent: kept as typed
    assert absolute.env_kwargs["data_kwargs"] == expected
    assert absolute.env_kwargs["source"] == "coco" and absolute.env_kwargs["difficulty"] == "easy"
