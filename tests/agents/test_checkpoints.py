"""Checkpoints and --resume: durable atomic writes, incomplete folders skipped, damaged files named,
branches continued, the newest kept within --save-total-limit, paths that resolve from any folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import perception_env  # noqa: F401
from agents.checkpoints import (
    LATEST_FILE,
    RUN_FILE,
    STATE_FILE,
    CheckpointWarning,
    latest_checkpoint,
    prune_checkpoints,
)
from agents.cli import main
from agents.config import SetupError
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
    from agents.checkpoints import read_state
    from agents.trainer_state import write_state

    path = tmp_path / STATE_FILE
    write_state({"step": 1, "agent": {"moment": torch.ones(3)}, "rng": {}, "config": {}}, path)
    assert read_state(tmp_path)["step"] == 1
    _cut(path)
    with pytest.raises(SetupError, match=re.escape(f"{path}: cannot be read")):
        read_state(tmp_path)


# ------------------------------------------------------------------------------ durable writes
def test_files_and_folders_reach_the_disk_before_the_rename(tiny_model_dir, tmp_path, monkeypatch):
    import agents.checkpoints as checkpoints_module
    from tests.agents.support import one_step_trainer

    events: list[tuple[str, str]] = []
    fsync, replace = checkpoints_module._fsync, os.replace
    monkeypatch.setattr(
        checkpoints_module, "_fsync", lambda p: (events.append(("fsync", str(p))), fsync(p))[1]
    )
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


# ------------------------------------------------------------------------------ no code in a checkpoint
class _WritesMarker:
    """Unpickled, it runs code that writes ``marker``: what a crafted checkpoint does, harmlessly."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _as_legacy(checkpoint: Path, **extra) -> Path:
    """Rewrite ``checkpoint``'s state as earlier versions wrote it: ``trainer_state.pt``, a torch pickle with
    numpy's RNG state as an array (``extra``: more entries in the agent's state)."""
    import numpy as np

    from agents.checkpoints import LEGACY_STATE_FILE, read_state

    state = read_state(checkpoint)
    name, key, *rest = state["rng"]["numpy"]
    state["rng"]["numpy"] = (name, np.asarray(key, dtype=np.uint32), *rest)
    state["agent"].update(extra)
    (checkpoint / STATE_FILE).unlink()
    torch.save(state, checkpoint / LEGACY_STATE_FILE)
    return checkpoint / LEGACY_STATE_FILE


def test_the_trainer_state_reads_back_equal_types_included(tmp_path):
    import math

    import numpy as np

    from agents.trainer_state import read_safetensors_state, write_state

    state = {
        "step": 3,
        "rng": {"python": (3, (1, 2, 2**32 - 1), None)},
        "agent": {
            "optimizer": {"state": {"w": {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}},
                          "param_groups": [{"betas": (0.9, 0.999), "lr": 1e-6, "foreach": None, "params": ["w"]}]},
            "by_index": {0: torch.arange(4, dtype=torch.int64), (1, 2): "a tuple key", "__tensor__": 1},
            "half": torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
            "figures": [float("inf"), -0.0, 0.1 + 0.2, True, np.float64(0.5), np.int64(7)],
        },
    }  # fmt: skip
    write_state(state, tmp_path / STATE_FILE)
    back = read_safetensors_state(tmp_path / STATE_FILE)

    def same(a, b):
        assert type(a) is type(b) or isinstance(a, np.generic), (a, b)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b)
        elif isinstance(a, dict):
            assert list(a) == list(b)
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                same(x, y)
        else:
            assert a == b and math.copysign(1, a) == math.copysign(1, b) if isinstance(a, float) else a == b

    same(state, back)
    assert back["agent"]["figures"][2] == 0.30000000000000004  # floats to the last bit


def test_a_value_that_is_not_data_is_refused_when_saved(tmp_path):
    from agents.trainer_state import write_state

    with pytest.raises(TypeError, match=r"state\.agent\.baseline is a fractions\.Fraction: a trainer state"):
        from fractions import Fraction

        write_state({"agent": {"baseline": Fraction(1, 3)}}, tmp_path / STATE_FILE)


def test_a_checkpoint_holds_no_pickle(two_step_run):
    """Every file of a checkpoint is safetensors, JSON or text: none is a pickle or a torch zip."""
    files = [p for p in (two_step_run / "checkpoints" / "step-000002").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {STATE_FILE, RUN_FILE, "model.safetensors"}
    for path in files:
        head = path.read_bytes()[:2]
        assert not zipfile.is_zipfile(path) and head[:1] != b"\x80", path  # \x80: pickle's PROTO opcode


def test_a_crafted_pickle_in_a_checkpoint_is_refused_and_runs_nothing(two_step_run, tmp_path):
    """`perception-r1 train --resume` on a checkpoint whose trainer_state.pt runs code: before, it ran the code,
    printed the normal resume and exited 0; now it exits 1 with one line naming the file and what it calls."""
    from agents.checkpoints import LEGACY_STATE_FILE
    from agents.trainer_state import TRUST_VARIABLE

    run = _copy(two_step_run, tmp_path)
    marker = tmp_path / "code-ran"
    crafted = _as_legacy(run / "checkpoints" / "step-000002", payload=_WritesMarker(marker))
    # the payload is live: unrestricted unpickling (what --resume did) runs it
    torch.load(shutil.copy(crafted, tmp_path / "copy.pt"), weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()

    console = Path(sys.executable).with_name("perception-r1")
    done = subprocess.run(
        [str(console), "train", "--resume", str(run), "--total-steps", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", TRUST_VARIABLE: ""},
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(
        f"perception-r1 train: {run / 'checkpoints' / 'step-000002' / LEGACY_STATE_FILE}"
    )
    assert "refused" in message and "builtins.exec" in message and f"{TRUST_VARIABLE}=" in message
    assert not marker.exists() and "resumed from" not in done.stdout
    assert not (run / "checkpoints" / "step-000003").exists()


def test_a_crafted_pickle_is_refused_by_the_reader_too(two_step_run, tmp_path, monkeypatch):
    """The state reader itself (what load_state and saved_run call) refuses it, not only the early check."""
    from agents.checkpoints import read_state
    from agents.trainer_state import TRUST_VARIABLE

    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    run = _copy(two_step_run, tmp_path)
    marker = tmp_path / "code-ran"
    _as_legacy(run / "checkpoints" / "step-000001", payload=_WritesMarker(marker))
    with pytest.raises(SetupError, match="refused: .* calls builtins.exec"):
        read_state(run / "checkpoints" / "step-000001")
    assert not marker.exists()


def test_a_pickle_beside_the_safetensors_state_is_never_read(two_step_run, tmp_path, capsys):
    from agents.checkpoints import LEGACY_STATE_FILE

    run = _copy(two_step_run, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"payload": _WritesMarker(marker)}, run / "checkpoints" / "step-000002" / LEGACY_STATE_FILE)
    main(["train", "--resume", str(run), "--total-steps", "3"])
    assert "resumed from" in capsys.readouterr().out and not marker.exists()


def test_an_older_checkpoint_resumes_exactly_through_the_restricted_reader(two_step_run, tmp_path):
    """A trainer_state.pt of an earlier version (numpy's RNG state an array) resumes, with a warning, to the
    same weights as the run that never stopped; its next checkpoint is written in the new format."""
    from safetensors.torch import load_file

    from agents.trainer_state import LegacyCheckpointWarning

    run = _copy(two_step_run, tmp_path)
    _as_legacy(run / "checkpoints" / "step-000001")
    with (
        pytest.warns(LegacyCheckpointWarning, match="older format, read as tensors and plain values only"),
        pytest.warns(CheckpointWarning, match="this branch replaces step-000002"),
    ):
        main(["train", "--resume", str(run / "checkpoints" / "step-000001"), "--total-steps", "2"])
    resumed = load_file(run / "checkpoints" / "step-000002" / "policy" / "model.safetensors")
    straight = load_file(two_step_run / "checkpoints" / "step-000002" / "policy" / "model.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert (run / "checkpoints" / "step-000002" / STATE_FILE).is_file()


def test_only_the_file_the_trust_variable_names_is_unpickled_in_full(tmp_path, monkeypatch):
    from fractions import Fraction

    from agents.checkpoints import LEGACY_STATE_FILE, read_state
    from agents.trainer_state import TRUST_VARIABLE, LegacyCheckpointWarning

    path = tmp_path / LEGACY_STATE_FILE
    torch.save({"step": 1, "agent": {"baseline": Fraction(1, 3)}, "rng": {}, "config": {}}, path)
    for trusted in ("", str(tmp_path / "other.pt")):
        monkeypatch.setenv(TRUST_VARIABLE, trusted)
        with pytest.raises(
            SetupError, match=f"calls fractions.Fraction.*{TRUST_VARIABLE}={re.escape(str(path))}"
        ):
            read_state(tmp_path)
    monkeypatch.setenv(TRUST_VARIABLE, str(path))
    with pytest.warns(LegacyCheckpointWarning, match=f"unpickled in full because {TRUST_VARIABLE} names it"):
        assert read_state(tmp_path)["agent"]["baseline"] == Fraction(1, 3)


def test_a_checkpoint_naming_code_as_its_agent_is_not_resumed_alone(two_step_run, tmp_path):
    """run.json's agent names what --resume rebuilds; a crafted one naming a file it ships (``file.py:Class``)
    would have that file executed by ``resolve_agent``. Only the package's own agents come back by
    themselves: such a run resumes only with the same --agent given again, and nothing runs before."""
    from agents.checkpoints import RUN_FILE

    run = _copy(two_step_run, tmp_path)
    marker = tmp_path / "code-ran"
    shipped = tmp_path / "agent.py"
    shipped.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    run_file = run / "checkpoints" / "step-000002" / RUN_FILE
    saved = json.loads(run_file.read_text())
    run_file.write_text(json.dumps({**saved, "agent_name": f"{shipped}:Agent"}))

    console = Path(sys.executable).with_name("perception-r1")
    done = subprocess.run(
        [str(console), "train", "--resume", str(run), "--total-steps", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "code outside perception-r1" in message and f"add --agent {shipped}:Agent" in message
    assert not marker.exists() and "resumed from" not in done.stdout
