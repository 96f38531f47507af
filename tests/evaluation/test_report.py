"""The markdown table says what metrics.json says."""

import json
import math

from perception_env.evaluation.report import write_outputs
from perception_env.evaluation.table import format_value, markdown_table, task_columns


def _parse_table(text):
    """{row label: {column header: cell}} of every table in ``text``."""
    rows = {}
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() or line.startswith("###") else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            rows[cells[1]] = dict(zip(header, cells))
    return rows


def test_table_matches_metrics_json(tmp_path):
    runs = [
        {
            "task": "detection",
            "benchmark": "COCO val2017",
            "agent": "model-a",
            "metrics": {
                "AP": 0.3191,
                "AP50": 0.467,
                "AP75": 0.334,
                "APs": 0.1,
                "APm": 0.25,
                "APl": float("nan"),
                "n": 5000.0,
                "reward": 1.234,
                "success": 0.05,
            },
        },
        {
            "task": "ocr",
            "benchmark": "PageOCR en",
            "agent": "model-b",
            "metrics": {
                "edit_distance": 0.035,
                "f1": 0.982,
                "precision": 0.99,
                "recall": 0.975,
                "bleu": 0.9,
                "meteor_exact_stem": 0.95,
                "n": 100.0,
                "reward": 0.96,
                "success": 0.4,
            },
        },
    ]
    paths = write_outputs(tmp_path, runs[0], [{"index": 0}])
    on_disk = json.loads(paths["metrics"].read_text())
    assert on_disk["metrics"]["APl"] is None  # NaN -> null
    table = markdown_table([on_disk, runs[1]])
    parsed = _parse_table(table)
    assert parsed["model-a"]["AP"] == "31.9" and parsed["model-a"]["AP_L"] == "–"
    assert parsed["model-b"]["edit dist ↓"] == "3.5"  # the paper's units
    assert "METEOR (exact+stem, no WordNet)" in parsed["model-b"] and "METEOR" not in parsed["model-b"]
    for run in (on_disk, runs[1]):
        row = parsed[run["agent"]]
        for key, header, kind in task_columns()[run["task"]]:
            if key in run["metrics"]:
                value = run["metrics"][key]
                assert row[header] == format_value(value, kind)
                if value is not None and not math.isnan(value) and kind == "pct":
                    assert float(row[header]) == round(100 * value, 1)
    assert _parse_table(paths["table"].read_text())["model-a"]["AP"] == "31.9"
    assert paths["predictions"].read_text().strip() == '{"index": 0}'


def test_every_paper_metric_has_a_column():
    """No metric the evaluation computes can silently be missing from the table."""
    from perception_env.evaluation.coco import COCO_STAT_NAMES
    from perception_env.evaluation.metrics import counting_metrics, grounding_metrics, ocr_sample_metrics

    produced = {
        "detection": set(COCO_STAT_NAMES[:6]),  # AP, AP50, AP75, APs, APm, APl: the paper's columns
        "grounding": set(grounding_metrics([[0, 0, 1, 1]], [[0, 0, 1, 1]])),
        "counting": set(counting_metrics([1], [1])),
        "ocr": set(ocr_sample_metrics("a b", "a b")) | {"meteor", "meteor_exact_stem"},
    }
    for task, keys in produced.items():
        assert keys == {key for key, _, _ in task_columns()[task]}, task
    run = {
        "task": "grounding",
        "benchmark": "RefCOCO val",
        "agent": "m",
        "metrics": grounding_metrics([[0, 0, 10, 10], [0, 0, 10, 5]], [[0, 0, 10, 10]] * 2),
    }
    row = _parse_table(markdown_table([run]))["m"]
    assert row["Acc@0.5"] == "100.0" and row["Acc@0.75"] == "50.0" and row["mIoU"] == "75.0"  # by hand


def test_any_answer_string_is_written_and_read_back(tmp_path):
    """A lone surrogate (e.g. from a 'surrogatepass' decode) made writing predictions.jsonl raise."""
    answers = ["a\ud800b", "\udfff", "\\\ud83d", "中文 OCR ✓", '🙂 \\u00e9 "quoted"', "plain"]
    records = [{"index": i, "answer": a, "parsed": {"labels": [a]}} for i, a in enumerate(answers)]
    run = {"task": "ocr", "benchmark": "b\udc80", "agent": "model \ud800", "metrics": {"n": 6.0}}
    paths = write_outputs(tmp_path, run, records)
    lines = paths["predictions"].read_bytes().decode("utf-8").splitlines()  # strict UTF-8: no surrogates
    assert [json.loads(line) for line in lines] == records  # every answer back exactly
    assert "中文 OCR ✓" in lines[3]  # text UTF-8 can hold stays readable, not \u-escaped
    assert json.loads(paths["metrics"].read_bytes().decode("utf-8")) == run
    assert "model \\ud800" in paths["table"].read_bytes().decode("utf-8")
