"""benchmarks/call_path.py: the agents files one step of ``perception-r1 train`` runs, traced."""

from benchmarks.call_path import ROOT, summary, trace_train, train_argv


def names(files) -> set[str]:
    return {str(f.relative_to(ROOT)) for f in files}


def test_one_traced_step_crosses_the_trainer_and_the_update_and_the_set_up_only_outside_it(
    tiny_model_dir, tmp_path, one_torch_thread
):
    whole, step = trace_train(train_argv(tiny_model_dir, tmp_path))
    assert (tmp_path / "call-path" / "checkpoints").is_dir()  # the traced command trained
    assert step < whole
    assert {
        "agents/trainer.py",
        "agents/base.py",
        "agents/grpo/loss.py",
        "agents/policies/logprobs.py",
    } <= names(step)
    # parsing and the set-up run before collect; the checkpoint is written after the update
    assert {"agents/cli.py", "agents/build.py", "agents/checkpoints.py"} <= names(whole) - names(step)


def test_the_summary_counts_files_and_their_lines():
    files = {ROOT / "agents" / "__init__.py", ROOT / "benchmarks" / "call_path.py"}
    lines = [len(f.read_text(encoding="utf-8").splitlines()) for f in sorted(files)]
    assert summary("path", files) == f"path: 2 files, {sum(lines):,} lines"
    listed = summary("path", files, listed=True).splitlines()
    assert listed[1:] == [f"    agents/__init__.py {lines[0]}", f"    benchmarks/call_path.py {lines[1]}"]
