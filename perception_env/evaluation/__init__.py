"""Evaluation as the paper reports it: metrics, COCO AP, the runner and the report. No torch.

* :mod:`.metrics`: grounding Acc@k / mean IoU / centre accuracy, counting accuracy / MAE,
  OCR edit distance / word P-R-F1 / BLEU / METEOR.
* :mod:`.coco`: COCO AP through pycocotools' ``COCOeval`` (every box scored 1.0).
* :mod:`.tasks`: :func:`task_metrics` (episodes -> the task's metrics), e.g. for a trainer.
* :mod:`.runner`: :func:`run_evaluation` of an answerer (oracle / empty / random / a model) over an env.
* :mod:`.report`: ``predictions.jsonl``, ``metrics.json``, the markdown table and, given the env, the pages
  and files below.
* :mod:`.html_report`: ``report.html``, every sample drawn in one self-contained page (``report_assets/``).
* :mod:`.detections`: a detection's ``detections.json`` (COCO results) and ``ground_truth.json``.

``perception-r1 eval`` (``agents.evaluate``) drives it from the command line.
"""

from perception_env.evaluation.coco import coco_eval, coco_from_samples, detection_metrics, to_coco_results
from perception_env.evaluation.metrics import (
    GROUNDING_THRESHOLDS,
    counting_metrics,
    grounding_metrics,
    ocr_metrics,
    ocr_sample_metrics,
)
from perception_env.evaluation.report import markdown_table, write_outputs
from perception_env.evaluation.runner import REFERENCE_AGENTS, EvaluationResult, run_evaluation
from perception_env.evaluation.tasks import task_metrics

__all__ = [
    "GROUNDING_THRESHOLDS",
    "REFERENCE_AGENTS",
    "EvaluationResult",
    "coco_eval",
    "coco_from_samples",
    "counting_metrics",
    "detection_metrics",
    "grounding_metrics",
    "markdown_table",
    "ocr_metrics",
    "ocr_sample_metrics",
    "run_evaluation",
    "task_metrics",
    "to_coco_results",
    "write_outputs",
]
