"""report.html's data and the COCO files, without a browser (tests/evaluation/test_report_browser.py opens the
page in Chromium): what the page embeds reads back as the records, failure reasons from hand-made records,
images embedded at display size, detections.json + ground_truth.json give metrics.json's AP in pycocotools,
and ``perception-r1 eval`` / ``perception-r1 report`` write them."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perception_env.evaluation import run_evaluation
from perception_env.evaluation.html_report import (
    DISPLAY_SIDE,
    align_runs,
    build_report,
    card_view,
    failure_tags,
    image_data_uri,
    prediction_matches,
)
from tests.documented import VENV_BIN, user_environment
from tests.evaluation.reports import detection_run


def embedded(page: str, name: str):
    """The JSON a page holds in ``<script type="application/json" id=name>``."""
    match = re.search(rf'<script type="application/json" id="{name}">(.*?)</script>', page, re.S)
    assert match, f"no {name} script"
    return json.loads(match.group(1))


def page_images(page: str) -> dict[int, str]:
    """Record position -> its image's data URI, as the page holds them (one element each)."""
    found = re.findall(r'<script type="text/plain" id="image-(\d+)">(.*?)</script>', page, re.S)
    return {int(k): uri for k, uri in found}


def decode(uri: str) -> Image.Image:
    kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,(.*)", uri).groups()
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format.lower() == kind
    return image


def coco_stats(folder: Path) -> np.ndarray:
    """pycocotools on the files as a user runs it: COCO(ground_truth.json).loadRes(detections.json)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(folder / "ground_truth.json"))
    ev = COCOeval(gt, gt.loadRes(str(folder / "detections.json")), iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats


# --------------------------------------------------------------------------------------------- images


def test_a_small_image_is_embedded_lossless_as_png():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    back = decode(image_data_uri(image))
    assert back.format == "PNG" and back.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(back.convert("RGB")), image)


def test_a_photo_is_downscaled_to_display_size_as_jpeg():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(500, 1000, 3), dtype=np.uint8)  # incompressible: PNG over budget
    back = decode(image_data_uri(noise))
    assert back.format == "JPEG" and back.size == (DISPLAY_SIDE, DISPLAY_SIDE // 2)
    assert decode(image_data_uri(noise, max_side=100)).size == (100, 50)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)])
def test_an_image_of_another_shape_or_type_is_refused(bad):
    with pytest.raises(ValueError, match="uint8"):
        image_data_uri(bad)


# ------------------------------------------------------------------------------------- failure reasons


def record(**fields):
    base = {
        "index": 0,
        "sample_id": "s0",
        "image_size": [100, 80],
        "reward": 0.0,
        "is_success": False,
        "parsed": {
            "well_formed": True,
            "boxes": [],
            "labels": [],
            "points": [],
            "count": None,
            "problems": [],
        },
        "target": {"boxes": [], "labels": [], "points": [], "text": ""},
        "matching": [],
    }
    for key, value in fields.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


BOX = [10.0, 10.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ({"is_success": True}, ["passed"]),
        ({"parsed": {"well_formed": False, "problems": ["not valid JSON"]}}, ["malformed answer"]),
        (  # one target, nothing found
            {"target": {"boxes": [BOX], "labels": ["dog"]}},
            ["missed objects"],
        ),
        (  # a box that earned nothing (tp False): the target is missed and the box is extra
            {
                "target": {"boxes": [BOX], "labels": ["dog"]},
                "parsed": {"boxes": [[50, 50, 60, 60]], "labels": ["dog"]},
                "matching": [{"pred": 0, "target": 0, "iou": 0.0, "tp": False}],
            },
            ["missed objects", "extra objects"],
        ),
        (  # the right box with the wrong class, read with a problem
            {
                "target": {"boxes": [BOX], "labels": ["dog"]},
                "parsed": {"boxes": [BOX], "labels": ["cat"], "problems": ["box clipped"]},
                "matching": [{"pred": 0, "target": 0, "iou": 1.0, "label_ok": False, "tp": True}],
            },
            ["parse problems", "wrong label"],
        ),
        ({"target": {"points": [[1, 2], [3, 4]]}, "parsed": {"count": 3}}, ["wrong count"]),
        ({"target": {"text": "hat"}, "parsed": {"text": "cat"}}, ["misread text"]),
        (  # every object found, and still below the task's bar
            {
                "target": {"boxes": [BOX], "labels": ["dog"]},
                "parsed": {"boxes": [BOX], "labels": ["dog"]},
                "matching": [{"pred": 0, "target": 0, "iou": 0.6, "tp": True}],
            },
            ["below the bar"],
        ),
    ],
)
def test_failure_tags(fields, tags):
    assert failure_tags(record(**fields)) == tags


def test_prediction_matches_and_card_view():
    r = record(
        target={"boxes": [BOX, BOX], "labels": ["dog", "cat"]},
        parsed={"boxes": [BOX, BOX, BOX], "labels": ["cat", "dog", "owl"]},
        matching=[
            {"pred": 0, "target": 1, "tp": True},
            {"pred": 1, "target": 0, "tp": False},  # considered, earned nothing: unmatched (red)
        ],
    )
    assert prediction_matches(r) == {0: 1, 1: None, 2: None}
    view = card_view(r)
    assert view["matched"] == [1, None, None]
    assert view["classes"] == ["cat", "dog", "owl"]
    assert view["tags"] == ["missed objects", "extra objects"]


# ------------------------------------------------------------------------------------------ the page


def test_the_page_embeds_the_records_as_they_are():
    """Text that would end a script or an HTML comment, quotes and a lone surrogate come back unchanged."""
    answer = 'x</script><script>alert(1)</script><!-- "q" & \ud800'
    records = [
        record(answer=answer, prompt="<b>bold?</b>"),
        record(index=1, sample_id="s1", reward=float("nan")),
    ]
    run = {"task": "detection", "benchmark": "b", "agent": "a", "metrics": {"n": 2.0, "AP": 0.5}}
    page = build_report(run, records, [None, None])
    assert page.count("</script>") == page.count("<script")  # no record text ends a script early
    written = page.encode("utf-8", errors="backslashreplace").decode("utf-8")  # as write_report writes it
    back = embedded(written, "records")
    assert back[0]["answer"] == answer and back[0]["prompt"] == "<b>bold?</b>"
    assert back[1]["reward"] is None  # NaN is no JSON: null
    assert page_images(written) == {}
    assert [v["tags"] for v in embedded(written, "views")] == [failure_tags(r) for r in records]
    assert "<td>50.0</td>" in page  # the metrics table in the paper's units


def test_compare_aligns_the_samples_both_answered():
    a = [record(index=i, sample_id=f"s{i}") for i in range(4)]
    b = [record(index=i, sample_id=f"s{i}", reward=1.0) for i in (3, 1, 7)]
    assert align_runs(a, b) == ([1, 3], [1, 0])
    run = {"task": "grounding", "benchmark": "b", "agent": "before", "metrics": {}}
    page = build_report(run, a, [None] * 4, compare=({**run, "agent": "after"}, b))
    assert [r["index"] for r in embedded(page, "records")] == [1, 3]
    assert [r["index"] for r in embedded(page, "records-b")] == [1, 3]
    assert "3 samples answered by only one of the two evaluations are not shown" in page
    with pytest.raises(ValueError, match="no sample in common"):
        build_report(run, a, [None] * 4, compare=(run, [record(index=9, sample_id="s9")]))
    with pytest.raises(ValueError, match="cannot compare a grounding evaluation with a counting one"):
        build_report(run, a, [None] * 4, compare=({**run, "task": "counting"}, b))
    with pytest.raises(ValueError, match="3 images for 4 records"):
        build_report(run, a, [None] * 3)


# ------------------------------------------------------------------------------- written by an evaluation


def test_an_evaluation_writes_the_page_and_coco_files_that_give_its_ap(tmp_path):
    """A detector with known mistakes (0 < AP < 1): pycocotools on detections.json + ground_truth.json
    gives metrics.json's AP; the page holds the records of predictions.jsonl and each sample's image."""
    run, records = detection_run(tmp_path, n=24)
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert 0.2 < metrics["AP"] < 0.95
    stats = coco_stats(tmp_path)
    for k, key in enumerate(("AP", "AP50", "AP75")):
        assert stats[k] == pytest.approx(metrics[key], abs=1e-12), key
    detections = json.loads((tmp_path / "detections.json").read_text())
    assert {d["image_id"] for d in detections} <= set(range(1, 25)) and {d["score"] for d in detections} == {
        1.0
    }
    first = detections[0]  # image 1 is record 0: its first box in original pixels, as [x, y, w, h]
    x1, y1, x2, y2 = records[0]["parsed"]["boxes"][0]
    assert first["image_id"] == 1 and first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert embedded(page, "records") == lines
    images = page_images(page)
    assert sorted(images) == list(range(24)) and decode(images[0]).size == tuple(records[0]["image_size"])


def test_on_coco_data_the_files_carry_the_original_image_and_category_ids(tmp_path):
    """COCO's own ids (images 139, 285, 632; category ids as the annotation file's), and its AP."""
    import gymnasium as gym

    from perception_env.evaluation import run_evaluation, write_outputs
    from perception_env.evaluation.runner import oracle_answerer
    from tests.data.fixtures import write_coco_official

    root = write_coco_official(tmp_path / "coco")
    env = gym.make("PerceptionR1/Detection-v0", source="coco", split="val", data_kwargs={"root": str(root)})
    result = run_evaluation(env, oracle_answerer)
    run = {"task": "detection", "benchmark": "coco val", "agent": "oracle", "metrics": result.metrics}
    write_outputs(tmp_path / "run", run, result.records, env=env)
    detections = json.loads((tmp_path / "run" / "detections.json").read_text())
    official = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    truth = {(a["image_id"], a["category_id"]) for a in official["annotations"]}
    assert {(d["image_id"], d["category_id"]) for d in detections} == truth
    assert result.metrics["official_coco_gt"] == 1.0
    assert coco_stats(tmp_path / "run")[0] == pytest.approx(result.metrics["AP"], abs=1e-12)
    assert result.metrics["AP"] == pytest.approx(1.0)


def run_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(VENV_BIN / "perception-r1"), *args],
        cwd=cwd,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_cli_eval_random_detection_writes_the_report_and_coco_files(tmp_path):
    """The issue's command, as a user runs it: report.html and detections.json beside metrics.json, and
    pycocotools on the files gives its AP (oracle: 1; random: the AP metrics.json has)."""
    for agent, limit in (("random", "200"), ("oracle", "20")):
        out = tmp_path / agent
        run_cli(
            "eval", "--env", "PerceptionR1/Detection-v0", "--agent", agent, "--limit", limit,
            "--output", str(out), "--quiet", cwd=tmp_path,
        )  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        page = (out / "report.html").read_text(encoding="utf-8")
        assert len(embedded(page, "records")) == int(limit)
        detections = json.loads((out / "detections.json").read_text())
        if detections:  # loadRes refuses an empty list; no box at all is AP 0
            assert coco_stats(out)[0] == pytest.approx(metrics["AP"], abs=1e-12)
        else:
            assert metrics["AP"] == 0.0 and metrics["predictions"] == 0
    assert metrics["AP"] == pytest.approx(1.0)  # the oracle's, from the files


@pytest.mark.slow
def test_cli_report_writes_the_page_again_and_compares_two_runs(tmp_path):
    """``perception-r1 report RUN_DIR`` gives the page eval wrote; ``--compare`` pairs the samples and
    a run of another env is refused in one line."""
    flawed, _ = detection_run(tmp_path / "flawed", n=12)
    first = (tmp_path / "flawed" / "report.html").read_bytes()
    (tmp_path / "flawed" / "report.html").unlink()
    done = run_cli("report", str(tmp_path / "flawed"), cwd=tmp_path)
    assert "report.html" in done.stdout
    assert (tmp_path / "flawed" / "report.html").read_bytes() == first

    run_cli(
        "eval", "--env", "PerceptionR1/Detection-v0", "--agent", "oracle", "--limit", "12",
        "--env-kwargs", '{"difficulty": "easy"}', "--output", str(tmp_path / "oracle"), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    run_cli("report", str(tmp_path / "flawed"), "--compare", str(tmp_path / "oracle"), cwd=tmp_path)
    page = (tmp_path / "flawed" / "compare-oracle.html").read_text(encoding="utf-8")
    a, b = embedded(page, "records"), embedded(page, "records-b")
    assert [r["index"] for r in a] == [r["index"] for r in b] == list(range(12))
    assert all(r["reward"] == pytest.approx(3.0) for r in b)

    run_cli(
        "eval", "--env", "PerceptionR1/Detection-v0", "--agent", "oracle", "--limit", "12",
        "--output", str(tmp_path / "medium"), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "medium" / "metrics.json").write_text(
        (tmp_path / "medium" / "metrics.json").read_text().replace('"split": "test"', '"split": "val"')
    )
    done = run_cli("report", str(tmp_path / "medium"), cwd=tmp_path, check=False)
    assert done.returncode != 0 and "not the env that was evaluated" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("report", str(tmp_path / "nowhere"), cwd=tmp_path, check=False)
    assert done.returncode != 0 and "no metrics.json" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_wheel_ships_the_page_assets(tmp_path):
    """A non-editable install has the page's template, script and style (package data)."""
    from tests.test_install import shipped_files

    source = shipped_files(tmp_path / "source")  # a clean clone's files: no build/ of this checkout
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300, cwd=source,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("perception_r1-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("report.html", "report.js", "report.css"):
        assert f"perception_env/evaluation/report_assets/{asset}" in names, sorted(names)[:20]


# ------------------------------------------------------------------------------- written while training


def test_each_evaluation_of_a_training_run_is_written_with_its_report(
    tiny_model_dir, tmp_path, one_torch_thread
):
    """RUN/eval/step-NNNNNN holds what `eval` writes; `perception-r1 report` rebuilds the env from its spec
    and compares two steps."""
    from agents.cli import train
    from tests.agents.support import make_config

    config = make_config("grpo", tiny_model_dir, tmp_path, total_steps=2, eval_every=1, eval_samples=3)
    run_dir = train(config, progress=False)
    folders = sorted((run_dir / "eval").iterdir())
    assert [f.name for f in folders] == ["step-000001", "step-000002"]
    for step, folder in enumerate(folders, start=1):
        run = json.loads((folder / "metrics.json").read_text())
        assert (run["step"], run["agent"], run["env_id"]) == (step, f"step {step}", config.env_id)
        assert run["env_kwargs"]["split"] == config.eval_split and run["metrics"]["n"] == 3
        lines = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
        page = (folder / "report.html").read_text(encoding="utf-8")
        assert embedded(page, "records") == lines and len(lines) == 3
        images = page_images(page)
        assert len(images) == 3 and all(uri.startswith("data:image/png;base64,") for uri in images.values())
    run_cli("report", str(folders[0]), "--compare", str(folders[1]), cwd=tmp_path)
    page = (folders[0] / "compare-step-000002.html").read_text(encoding="utf-8")
    assert [r["index"] for r in embedded(page, "records-b")] == [0, 1, 2]


def test_the_demo_writes_its_before_and_after_evaluations_side_by_side(tmp_path, capsys, one_torch_thread):
    from agents.demo import run_demo
    from tests.agents.test_demo import MINIATURE

    run_demo(tmp_path, seed=0, recipe=MINIATURE, progress=False)
    page = (tmp_path / "before-vs-after.html").read_text(encoding="utf-8")
    before, after = embedded(page, "records"), embedded(page, "records-b")
    assert len(before) == len(after) == MINIATURE.eval_samples
    assert before == [json.loads(line) for line in (tmp_path / "eval-before" / "predictions.jsonl").open()]
    assert (tmp_path / "eval-after" / "report.html").is_file()
    assert f"in a browser: {tmp_path / 'before-vs-after.html'}" in capsys.readouterr().out


def test_an_env_made_without_gym_make_is_written_and_reported_without_images(tmp_path):
    """No spec to rebuild it from: metrics.json names no env, `report` says to use --no-images, which works."""
    from agents.evaluate import write_training_evaluation
    from perception_env.evaluation.runner import oracle_answerer
    from perception_env.tasks.detection import DetectionEnv

    env = DetectionEnv(split="test", difficulty="easy")
    result = run_evaluation(env, oracle_answerer, limit=3)
    write_training_evaluation(
        tmp_path / "run", env, {"metrics": result.metrics, "records": result.records}, "x"
    )
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["env_id"] is None and run["agent"] == "x"
    assert len(page_images((tmp_path / "run" / "report.html").read_text(encoding="utf-8"))) == 3
    done = run_cli("report", str(tmp_path / "run"), cwd=tmp_path, check=False)
    assert done.returncode != 0 and "use --no-images" in done.stderr and "Traceback" not in done.stderr
    run_cli(
        "report", str(tmp_path / "run"), "--no-images", "--output", str(tmp_path / "plain.html"), cwd=tmp_path
    )
    page = (tmp_path / "plain.html").read_text(encoding="utf-8")
    assert page_images(page) == {} and len(embedded(page, "records")) == 3
