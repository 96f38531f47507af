"""docs/real-data.md, done as a user does it: every command in bash through the installed ``perception-r1``
console script, the Python snippet in a fresh interpreter, in one working folder.

A command changes here only by

* flags that shorten it (``SHORT_EVAL`` / ``SHORT_TRAIN``: fewer samples, steps, prompts, answers, tokens);
* the one table of substitutions below (``DATA``, ``MODELS``, ``DEVICE``): the data folders become small
  folders this test writes in the layouts the doc gives (tests/data/fixtures.py), the hub checkpoints become
  tiny random ones of the same architecture made by ``perception-r1 make-tiny-model`` (nothing is
  downloaded: ``HF_HUB_OFFLINE=1``), and ``cuda`` becomes ``cpu``.

The doc's claim that its evaluations also run with ``--agent oracle`` (100 everywhere) and ``--agent empty``
(AP 0) is checked with ``--model ...`` swapped for the agent: the oracle on every evaluation command, the
empty agent on the detection ones.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.data.fixtures import (
    write_coco_official,
    write_page_ocr_pages,
    write_pixmo_count_export,
    write_refer_benchmarks,
)
from tests.documented import (
    ROOT,
    VENV_BIN,
    Command,
    code_blocks,
    run_shell,
    set_flag,
    shell_commands,
    user_environment,
    user_folder,
)

DOC = ROOT / "docs/real-data.md"
COMMANDS = [command for block in code_blocks(DOC, "bash") for command in shell_commands(block)]

# -- The substitutions: what the doc names -> what this test uses (the only edits besides SHORT_*) -----------
# data folders -> (folder under the working folder's local-data/, the fixture writing the doc's layout there)
DATA = {
    # annotations/instances_{val,train}2017.json, {val,train}2017/000000000139.jpg ...
    "/data/coco": ("coco", write_coco_official),
    # refcoco/refs(unc).p, refcoco+/refs(unc).p, refcocog/refs(umd).p (+ instances.json), images/mscoco/...
    "/data/refer": ("refer", write_refer_benchmarks),
    # {train,validation,test}.jsonl (points in percent), images/<sha256>.jpg
    "/data/pixmo-count": ("pixmo-count", write_pixmo_count_export),
    # train.jsonl, test_en.jsonl, test_zh.jsonl, pages/*.png
    "/data/page-ocr": ("page-ocr", write_page_ocr_pages),
}
# hub ids -> `perception-r1 make-tiny-model models/ARCH --arch ARCH` (same architecture, random, offline)
MODELS = {"Qwen/Qwen2-VL-2B-Instruct": "qwen2-vl", "Qwen/Qwen2.5-VL-3B-Instruct": "qwen2.5-vl"}
DEVICE = {"--device cuda": "--device cpu"}

# -- Shortening flags: set where the command has them, appended to each `perception-r1` line otherwise -------
SHORT_EVAL = {"--limit": "2", "--batch-size": "2", "--max-new-tokens": "8"}
SHORT_TRAIN = {"--total-steps": "2", "--prompts-per-step": "2", "--group-size": "2", "--max-new-tokens": "8"}

# Commands the suite does not run, and why (each is reported as a skip with this reason).
NOT_RUN = {
    "pip install 'perception-r1[zh]'": "installs jieba from a package index; the tests run offline and do "
    "not change the install. test_page_ocr checks that the zh evaluation without jieba says so in its notes",
}

RUN_HERE = (
    "perception-r1 eval --env PerceptionR1/Detection-v0",
    "perception-r1 train --env PerceptionR1/Detection-v0",
    "for split in val testA testB; do\nperception-r1 eval --env PerceptionR1/Grounding-v0",
    "perception-r1 eval --env PerceptionR1/Grounding-v0",
    "for split in val test; do\nperception-r1 eval --env PerceptionR1/Grounding-v0",
    "perception-r1 train --env PerceptionR1/Grounding-v0",
    "for split in val test; do\nperception-r1 eval --env PerceptionR1/Counting-v0",
    "perception-r1 train --env PerceptionR1/Counting-v0",
    "for lang in en zh; do\nperception-r1 eval --env PerceptionR1/OCR-v0",
    "perception-r1 train --env PerceptionR1/OCR-v0",
)

# The keys docs/real-data.md says each predictions.jsonl line has (and image_id for COCO images).
PREDICTION_KEYS = {
    "index",
    "sample_id",
    "prompt",
    "answer",
    "answer_format",
    "reward",
    "is_success",
    "parsed",
    "target",
    "reason",
}


def doc_command(prefix: str, *, contains: str = "") -> Command:
    """The one command that starts with ``prefix`` and contains ``contains`` (a doc edit must show here)."""
    found = [c for c in COMMANDS if c.text.startswith(prefix) and contains in c.text]
    assert len(found) == 1, f"{len(found)} doc commands start with {prefix!r} and contain {contains!r}"
    return found[0]


def substitute(text: str, ws: Path) -> str:
    """The command with the substitutions made: nothing of the doc's machine (/data, hub ids, cuda) stays."""
    for doc_path, (folder, _) in DATA.items():
        text = re.sub(rf"{re.escape(doc_path)}(?![\w-])", str(ws / "local-data" / folder), text)
    for hub_id, arch in MODELS.items():
        text = text.replace(hub_id, str(ws / "models" / arch))
    for old, new in DEVICE.items():
        text = text.replace(old, new)
    leftover = re.findall(r"/data/|Qwen/|cuda|--model \.\.\.", text)
    assert not leftover, f"the test has no substitution for {leftover} in {text!r}"
    return text


def shorten(text: str, flags: dict[str, str]) -> str:
    """Each flag set to its short value where a perception-r1 line has it, else appended to that line."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("perception-r1 "):
            for flag, value in flags.items():
                has = re.search(rf"\s{re.escape(flag)}\s", line)
                line = set_flag(line, flag, value) if has else f"{line} {flag} {value}"
            lines[i] = line
    return "\n".join(lines)


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def check_eval_outputs(
    folder: Path, *, task: str, dataset: str, split: str, samples: int, model: Path | None
) -> dict:
    """What the doc says `eval` writes into --output: predictions.jsonl, metrics.json, table.md."""
    run = metrics(folder)
    assert (run["task"], run["samples"], run["env_kwargs"]["split"]) == (task, samples, split), run
    # the label names the data set and the split, once ("coco val"; "refcoco-val": the loader's name has it)
    assert run["benchmark"] in (f"{dataset} {split}", f"{dataset}-{split}"), run["benchmark"]
    assert run["benchmark"].count(split) == 1, run["benchmark"]
    assert run["model"] == (None if model is None else str(model)), run["model"]
    lines = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == samples and [p["index"] for p in lines] == list(range(samples))
    for p in lines:
        assert PREDICTION_KEYS <= set(p), sorted(PREDICTION_KEYS - set(p))
        if task in ("detection", "grounding"):  # COCO and RefCOCO samples are COCO images
            assert isinstance(p["image_id"], int), p.keys()
    table = (folder / "table.md").read_text()
    assert f"| {run['benchmark']} | {run['agent']} |" in table, table
    return run


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The user's working folder, with the doc's data in its layouts under local-data/ (written here: nothing
    binary is committed)."""
    ws = user_folder(tmp_path_factory.mktemp("real-data"))
    for folder, write in DATA.values():
        write(ws / "local-data" / folder)
    return ws


@pytest.fixture(scope="module")
def models(ws) -> Path:
    """The two tiny checkpoints standing in for the hub ids, made by the console script."""
    for arch in MODELS.values():
        run_shell(f"perception-r1 make-tiny-model models/{arch} --arch {arch}", ws)
    return ws / "models"


def run_doc(command: Command, ws: Path, flags: dict[str, str]) -> str:
    out = run_shell(shorten(substitute(command.text, ws), flags), ws)
    # each checkpoint's family matches the env's answer format: no warning
    assert "warning: the model is" not in out, out[-2000:]
    return out


def train_run(ws: Path, env_id: str) -> dict:
    """The one run folder the train command made under runs/: a checkpoint at its last step; its config."""
    (run,) = (ws / "runs").glob(f"{env_id.replace('/', '-')}__grpo__0__*")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002"]
    config = json.loads((run / "config.json").read_text())
    assert (config["total_steps"], config["dtype"], config["device"]) == (2, "bfloat16", "cpu"), config
    return config


# -- the doc, command by command ----------------------------------------------------------------------------
def test_every_command_is_run_here_or_excused():
    for command in COMMANDS:
        covered = [p for p in (*RUN_HERE, *NOT_RUN) if command.text.startswith(p)]
        assert covered, f"docs/real-data.md command not exercised by {Path(__file__).name}: {command.text!r}"
    assert len(code_blocks(DOC, "python")) == 1, "a new Python snippet in docs/real-data.md: run it here too"
    text = "\n".join(c.text for c in COMMANDS)
    for name in (*DATA, *MODELS, *DEVICE):  # the substitution table stays in step with the doc
        assert name in text, f"{name!r} is no longer in docs/real-data.md's commands"


@pytest.mark.parametrize("prefix", sorted(NOT_RUN))
def test_commands_not_run_here(prefix):
    assert any(c.text.startswith(prefix) for c in COMMANDS), f"NOT_RUN lists {prefix!r}, no longer in the doc"
    pytest.skip(f"docs/real-data.md `{prefix}`: {NOT_RUN[prefix]}")


@pytest.mark.slow
def test_coco_val2017_detection(ws, models):
    evaluate = doc_command("perception-r1 eval --env PerceptionR1/Detection-v0", contains="--model")
    run_doc(evaluate, ws, SHORT_EVAL)
    run = check_eval_outputs(
        ws / "runs/eval/coco-val2017",
        task="detection",
        dataset="coco",
        split="val",
        samples=2,
        model=models / "qwen2.5-vl",
    )
    assert run["metrics"]["official_coco_gt"] == 1.0 and run["answer_format"] == "qwen2.5-vl"
    assert run["max_new_tokens"] == 8 and {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(run["metrics"])

    # "a quick look first", as written (--limit 200: the 3 images here); the default --output under runs/eval
    quick = doc_command("perception-r1 eval --env PerceptionR1/Detection-v0", contains="--agent oracle")
    out = run_shell(substitute(quick.text, ws), ws)
    (folder,) = (ws / "runs/eval").glob("PerceptionR1-Detection-v0__oracle__*")
    run = check_eval_outputs(folder, task="detection", dataset="coco", split="val", samples=3, model=None)
    assert run["metrics"]["AP"] == pytest.approx(1.0) and run["metrics"]["official_coco_gt"] == 1.0, run
    assert re.search(r"\| coco val \| oracle \| 100\.0 \|", out), out

    run_doc(doc_command("perception-r1 train --env PerceptionR1/Detection-v0"), ws, SHORT_TRAIN)
    config = train_run(ws, "PerceptionR1/Detection-v0")
    assert config["env_kwargs"]["source"] == "coco" and config["model"] == str(models / "qwen2.5-vl")


@pytest.mark.slow
def test_refcoco_grounding_then_the_python_snippet(ws, models):
    grounding = "perception-r1 eval --env PerceptionR1/Grounding-v0"
    for prefix in ("for split in val testA testB; do\n", "", "for split in val test; do\n"):
        run_doc(doc_command(prefix + grounding), ws, SHORT_EVAL)
    labels = {}
    outputs = "refcoco-val", "refcoco-testA", "refcoco-testB", "refcoco+-val", "refcocog-val", "refcocog-test"
    for output in outputs:
        dataset, split = output.rsplit("-", 1)
        run = check_eval_outputs(
            ws / "runs/eval" / output,
            task="grounding",
            dataset=dataset,
            split=split,
            samples=2,
            model=models / "qwen2-vl",
        )
        assert {"acc@0.5", "acc_mean_50_75_95", "mean_iou", "centre_acc"} <= set(run["metrics"]), run
        assert run["answer_format"] == "qwen2-vl"
        labels[output] = run["benchmark"]

    # "Putting runs side by side": the snippet, in the same folder, after the runs it names
    (block,) = code_blocks(DOC, "python")
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", block.text],
        cwd=ws,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| refcoco")]
    assert rows == [labels["refcoco-val"], labels["refcoco-testA"], labels["refcoco-testB"]], done.stdout
    assert "Acc@0.5" in done.stdout and "mean Acc@{.5,.75,.95}" in done.stdout

    run_doc(doc_command("perception-r1 train --env PerceptionR1/Grounding-v0"), ws, SHORT_TRAIN)
    config = train_run(ws, "PerceptionR1/Grounding-v0")
    assert config["env_kwargs"]["data_kwargs"]["dataset"] == "refcoco"


@pytest.mark.slow
def test_pixmo_count_counting(ws, models):
    run_doc(
        doc_command("for split in val test; do\nperception-r1 eval --env PerceptionR1/Counting-v0"),
        ws,
        SHORT_EVAL,
    )
    for split in ("val", "test"):
        run = check_eval_outputs(
            ws / f"runs/eval/pixmo-{split}",
            task="counting",
            dataset="pixmo-count",
            split=split,
            samples=2,
            model=models / "qwen2-vl",
        )
        assert {"accuracy", "mae"} <= set(run["metrics"])
    run_doc(doc_command("perception-r1 train --env PerceptionR1/Counting-v0"), ws, SHORT_TRAIN)
    assert train_run(ws, "PerceptionR1/Counting-v0")["env_kwargs"]["source"] == "pixmo-count"


@pytest.mark.slow
def test_page_ocr(ws, models):
    run_doc(
        doc_command("for lang in en zh; do\nperception-r1 eval --env PerceptionR1/OCR-v0"), ws, SHORT_EVAL
    )
    for lang in ("en", "zh"):
        run = check_eval_outputs(
            ws / f"runs/eval/pageocr-{lang}",
            task="ocr",
            dataset="page-ocr",
            split=f"test_{lang}",
            samples=2,
            model=models / "qwen2-vl",
        )
        assert {"edit_distance", "f1", "precision", "recall", "bleu"} <= set(run["metrics"])
        assert {"meteor", "meteor_exact_stem"} & set(run["metrics"])
    zh_notes = " ".join(metrics(ws / "runs/eval/pageocr-zh")["notes"])
    if _jieba_installed():
        assert "jieba not installed" not in zh_notes
    else:  # the doc: "without jieba: one token per character, and the run's notes say so"
        assert "per character" in zh_notes and "jieba" in zh_notes, zh_notes
    run_doc(doc_command("perception-r1 train --env PerceptionR1/OCR-v0"), ws, SHORT_TRAIN)
    assert train_run(ws, "PerceptionR1/OCR-v0")["env_kwargs"]["source"] == "page-ocr"


def _jieba_installed() -> bool:
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('jieba') is None)"
    return subprocess.run([str(VENV_BIN / "python"), "-c", code], env=user_environment()).returncode == 0


# -- "every command below also runs with --agent oracle (perfect answers: AP 100, every accuracy 100) and
#    --agent empty (AP 0)": the evaluation commands with --model ... swapped for the agent. The oracle runs
#    every one (bar the quick look, an oracle run already, checked above); the empty agent the detection ones,
#    where the doc says what it scores (each run is a process start: this keeps the file's time down).
EVALUATIONS = [c for c in COMMANDS if "perception-r1 eval " in c.text]
REFERENCE_RUNS = {
    "oracle": [c for c in EVALUATIONS if "--agent oracle" not in c.text],
    "empty": [c for c in EVALUATIONS if "PerceptionR1/Detection-v0" in c.text],
}


def with_agent(text: str, agent: str) -> str:
    text = re.sub(r"--model \S+", f"--agent {agent}", text)
    return re.sub(r"--agent \w+", f"--agent {agent}", text)


def check_perfect(run: dict) -> None:
    m, task = run["metrics"], run["task"]
    if task == "detection":  # pycocotools averages floats: a perfect AP_S can be 0.9999999999999998
        assert [m[k] for k in ("AP", "AP50", "AP75", "APs", "APm")] == pytest.approx([1.0] * 5, abs=1e-9), m
    elif task == "grounding":  # Acc@0.95 may fall short for tiny boxes in Qwen2-VL's integer frame (the doc)
        assert m["acc@0.1"] == m["acc@0.3"] == m["acc@0.5"] == m["acc@0.75"] == m["centre_acc"] == 1.0, m
    elif task == "counting":
        assert m["accuracy"] == 1.0 and m["mae"] == 0.0, m
    else:
        assert m["edit_distance"] == 0.0 and m["f1"] == m["precision"] == m["recall"] == m["bleu"] == 1.0, m


@pytest.mark.slow
@pytest.mark.parametrize("agent", sorted(REFERENCE_RUNS))
def test_evaluations_with_a_reference_agent(ws, tmp_path, agent):
    cwd = user_folder(tmp_path)
    assert len(EVALUATIONS) == 7, [c.text for c in EVALUATIONS]
    for command in REFERENCE_RUNS[agent]:
        run_shell(with_agent(substitute(command.text, ws), agent), cwd)
    folders = sorted((cwd / "runs" / "eval").iterdir())
    # oracle: COCO 1, RefCOCO 3 + 1 + 2, PixMo-Count 2, PageOCR 2; empty: COCO 1 + 1
    assert len(folders) == {"oracle": 11, "empty": 2}[agent], folders
    for folder in folders:
        run = metrics(folder)
        predictions = (folder / "predictions.jsonl").read_text().splitlines()
        assert run["agent_kind"] == agent and run["samples"] == len(predictions) > 0, run
        if agent == "oracle":
            check_perfect(run)
        else:
            assert run["metrics"]["AP"] == 0.0, run["metrics"]
