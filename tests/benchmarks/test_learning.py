"""benchmarks/learning.py: the table and the curves from saved runs (no training)."""

import json

from PIL import Image

from benchmarks.learning import load_runs, plot, table


def _run(task: str, seed: int, control: bool = True) -> dict:
    run = {"task": task, "seed": seed, "metric_label": "Acc@0.5", "sft_steps": 475, "before": 0.54,
           "after": 0.865, "gain": 32.5, "grpo_cpu_s": 83.2,
           "curve": [[0, 0.0, 0.0, 0.54], [25, 7.5, 9.0, 0.68], [300, 83.2, 99.0, 0.865]]}  # fmt: skip
    if control:
        run["control"] = {"after": 1.0, "gain": 46.0, "steps": 1000, "cpu_s": 92.4,
                          "curve": [[0, 0.0, 0.0, None], [1000, 92.4, 110.0, 1.0]]}  # fmt: skip
    return run


def test_saved_runs_make_one_table_row_each_with_grpo_and_the_control(tmp_path):
    for seed, control in ((0, True), (1, False)):
        (tmp_path / f"grounding-seed{seed}.json").write_text(json.dumps(_run("grounding", seed, control)))
    runs = load_runs(tmp_path)
    rows = table(runs).splitlines()[2:]
    assert [r["seed"] for r in runs] == [0, 1] and len(rows) == 2
    assert "|  54.0 |  86.5 (+32.5) | 83 | 100.0 (+46.0) | 1000 | 92 |" in rows[0]
    assert rows[1].endswith("|  86.5 (+32.5) | 83 | not measured | - | - |")  # no control: said, not invented


def test_the_curve_png_is_written_per_task(tmp_path):
    path = plot([_run("grounding", 0), _run("grounding", 2)], "grounding", tmp_path)
    assert path.name == "learning-grounding.png" and Image.open(path).size == (900, 540)
