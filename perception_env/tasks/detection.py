"""Object detection: name and box every object of the given classes."""

from __future__ import annotations

from typing import Any

from perception_env.core import PerceptionEnv
from perception_env.data import ShapesDetection, coco_source
from perception_env.data.loaders.jsonl import DETECTION
from perception_env.data.sample import Sample
from perception_env.rewards import DetectionRewardConfig, RewardResult, score_detection


class DetectionEnv(PerceptionEnv):
    """Detect every object of a known class list in one image.

    ## Description
    One-step episode: the agent sees an image and the question, answers with
    every object's box and class, and is paid by DETR-style Hungarian
    matching of its unordered objects to the ground truth (Perception-R1).

    ## Action Space
    ``UnicodeText``: the model's answer. Formats (keyword ``answer_format``):

    * ``"qwen2.5-vl"`` (default, as the paper's detection model):
      ``[{"bbox_2d": [x1, y1, x2, y2], "label": "circle"}, ...]`` in ABSOLUTE
      pixels of the image as the Qwen2.5-VL processor resizes it
      (``min_pixels``/``max_pixels``; ``info["frame"]`` gives the scale).
    * ``"qwen2-vl"``: ``<|object_ref_start|>circle<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>...``
      in ``[0, 1000)`` relative to the image width/height. Decoded with ``skip_special_tokens=True``
      it loses those tokens (``circle(85,156),(241,312)``): still read (the text before each box is
      its label) but not well-formed, so no format term; ``info["reason"]`` says the tokens are missing.

    The answer may end as a chat model ends it: trailing ``<|im_end|>`` / ``<|endoftext|>``
    tokens (repeated, white space among them) are removed before parsing; text after a stop
    token counts as extra text and the answer is not well-formed.

    ## Observation Space
    ``Dict(image=ImageSpace | Box, prompt=UnicodeText)``: an ``[H, W, 3]``
    uint8 image (any size, or ``image_size=(W, H)`` for a fixed one) and the
    question, by default ``Please output bbox coordinates and names of {categories}.``

    ## Rewards
    ``reward_config.kind="paper"`` (default), in ``[0, 3]``:
    ``0.25 format + 0.75 F1@IoU0.5 + label accuracy over matches + mean IoU
    over matches (- optional FP/FN penalty)``. ``kind="matched-iou"``, in
    ``[0, 1]``: the sum of matched IoUs over ``max(#predicted, #targets)``.
    ``reward_config.matching="listed"`` (an ablation, not the paper's): box ``i`` is scored against
    target ``i`` as the sample lists them instead of the Hungarian match.
    ``info`` holds every component, the matching and, for unreadable answers, why.

    ## Starting State
    A sample drawn with ``self.np_random``; ``reset(options={"index": i})`` replays sample ``i``.

    ## Episode End
    After one step (``terminated=True``).

    ## Arguments
    ``source`` ("synthetic", "coco", "jsonl", "hf"), ``difficulty`` ("easy"/"medium"/"hard"),
    ``split``, ``data_kwargs`` (loader arguments: annotation file, image folder...),
    ``answer_format``, ``prompt_template`` (``{categories}``), ``reward_config``,
    ``image_size``, ``min_pixels``/``max_pixels``, ``render_mode="rgb_array"``,
    ``reasoning`` (``"none"``, or ``"think"``: R1's think-then-answer, :mod:`perception_env.reasoning`), ``think_format_weight``.

    ## Version History
    * v0: initial version.

    ```python
    import gymnasium as gym, perception_env
    env = gym.make("PerceptionR1/Detection-v0", difficulty="easy")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
    ```
    """

    task = "detection"
    env_id = "PerceptionR1/Detection-v0"
    default_format = "qwen2.5-vl"
    formats = ("qwen2.5-vl", "qwen2-vl")
    default_prompts = {
        "qwen2.5-vl": "Please output bbox coordinates and names of {categories}.",
        "qwen2-vl": "Please output bbox coordinates and names of {categories}.",
    }
    answer_descriptions = {
        "qwen2.5-vl": "bbox coordinates and names in JSON format",
        "qwen2-vl": "bbox coordinates and names",
    }
    scorer = staticmethod(score_detection)
    reward_config_class = DetectionRewardConfig
    synthetic_data = ShapesDetection
    real_sources = {"coco": coco_source}
    jsonl_schema = DETECTION
    max_answer_tokens = 2048  # the paper's, for up to 100 objects
    report_columns = (
        ("AP", "AP", "pct"),
        ("AP50", "AP50", "pct"),
        ("AP75", "AP75", "pct"),
        ("APs", "AP_S", "pct"),
        ("APm", "AP_M", "pct"),
        ("APl", "AP_L", "pct"),
    )
    render_labels = True

    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        categories = list(self.dataset.categories) or sorted(set(sample.labels))
        return {"categories": ", ".join(categories)}

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        return {"boxes": sample.boxes, "labels": list(sample.labels)}

    def _is_success(self, result: RewardResult, sample: Sample) -> bool:
        """Every object found (IoU > threshold, right label) and nothing extra."""
        n_gt, n_pred = len(sample.boxes), len(result.parsed.boxes)
        hits = sum(1 for m in result.matching if m["tp"] and m.get("label_ok", True))
        return hits == n_gt == n_pred

    @classmethod
    def metrics(cls, records, samples, *, dataset=None, categories=None) -> dict[str, float]:
        """COCO AP (pycocotools, every box scored 1.0): on ``dataset``'s own COCO index when
        :func:`~perception_env.evaluation.coco.official_coco` allows (an image answered twice scored once,
        its first answer), else on a ground truth built from ``samples`` with ``categories`` (default
        ``dataset.categories``, else the labels found)."""
        from perception_env.evaluation.coco import detection_ground_truth, detection_metrics
        from perception_env.evaluation.metrics import parsed_boxes, parsed_of

        truth = detection_ground_truth(samples, dataset, categories)
        parsed = [parsed_of(records[k]) for k in truth.keep]
        boxes, labels = [parsed_boxes(p) for p in parsed], [list(p.get("labels") or []) for p in parsed]
        out = detection_metrics(truth.coco, truth.image_ids, boxes, labels, truth.name_to_category_id)
        out["official_coco_gt"] = 1.0 if truth.official else 0.0
        return out

    @classmethod
    def evaluation_notes(cls, samples, dataset, metrics) -> list[str]:
        if metrics.get("official_coco_gt"):
            truth = "the dataset's own COCO annotations (official areas, iscrowd)"
        else:
            truth = "built from the samples (area = box area, iscrowd honoured)"
        return [
            f"detection ground truth: {truth}",
            "every predicted box scored 1.0 (as the paper); unlabelled or unknown-label boxes dropped",
        ]
