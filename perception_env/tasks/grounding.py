"""Visual grounding: box the one object a referring expression names."""

from __future__ import annotations

from typing import Any

import numpy as np

from perception_env.core import PerceptionEnv, strip_article
from perception_env.data import ShapesGrounding, refcoco_source
from perception_env.data.loaders.jsonl import GROUNDING
from perception_env.data.sample import Sample
from perception_env.rewards import GroundingRewardConfig, RewardResult, score_grounding


class GroundingEnv(PerceptionEnv):
    """Box the object a referring expression picks out ("the red circle left of the blue square").

    ## Description
    One-step episode, as RefCOCO/+/g in Perception-R1.

    ## Action Space
    ``UnicodeText``. Formats (keyword ``answer_format``):

    * ``"qwen2-vl"`` (default, as the paper):
      ``<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``
      in ``[0, 1000)`` relative to the image width/height;
    * ``"qwen2.5-vl"``: ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]`` in
      absolute pixels of the processor-resized image.

    The first box read is the answer. A ``"qwen2-vl"`` answer decoded with
    ``skip_special_tokens=True`` (``dog(85,156),(241,312)``, its tokens gone) still has its box
    read and scored; it is not well-formed (no ``format_weight`` credit) and ``info["reason"]`` says so.
    The answer may end as a chat model ends it: trailing ``<|im_end|>`` / ``<|endoftext|>``
    tokens (repeated, white space among them) are removed before parsing; text after a stop
    token counts as extra text and the answer is not well-formed.

    ## Observation Space
    ``Dict(image, prompt)``; default prompt ``Output the bounding box of the
    {expression} in the image.`` (paper).

    ## Rewards
    ``IoU ** power`` of the first box with the target (``power=2`` as the
    paper), in ``[0, 1]`` (plus ``format_weight`` if set in ``reward_config``).

    ## Starting State
    A sample drawn with ``self.np_random``; ``reset(options={"index": i})`` replays sample ``i``.

    ## Episode End
    After one step (``terminated=True``).

    ## Arguments
    ``source`` ("synthetic", "refcoco", "jsonl", "hf"), ``difficulty``, ``split``,
    ``data_kwargs``, ``answer_format``, ``prompt_template`` (``{expression}``),
    ``reward_config``, ``image_size``, ``min_pixels``/``max_pixels``,
    ``render_mode="rgb_array"``, ``reasoning`` (``"none"``, or ``"think"``: R1's think-then-answer,
    :mod:`perception_env.reasoning`), ``think_format_weight``.

    ## Version History
    * v0: initial version.

    ```python
    import gymnasium as gym, perception_env
    env = gym.make("PerceptionR1/Grounding-v0", difficulty="easy")
    obs, info = env.reset(seed=0)
    print(obs["prompt"])   # Output the bounding box of the red circle in the image.
    ```
    """

    task = "grounding"
    env_id = "PerceptionR1/Grounding-v0"
    default_format = "qwen2-vl"
    formats = ("qwen2-vl", "qwen2.5-vl")
    default_prompts = {
        "qwen2-vl": "Output the bounding box of the {expression} in the image.",
        "qwen2.5-vl": "Locate the {expression} in the image and output its bbox coordinates in JSON format.",
    }
    answer_descriptions = {"qwen2-vl": "bounding box", "qwen2.5-vl": "bbox coordinates in JSON format"}
    scorer = staticmethod(score_grounding)
    reward_config_class = GroundingRewardConfig
    synthetic_data = ShapesGrounding
    real_sources = {"refcoco": refcoco_source}
    jsonl_schema = GROUNDING
    report_columns = (
        ("acc@0.1", "Acc@0.1", "pct"),
        ("acc@0.3", "Acc@0.3", "pct"),
        ("acc@0.5", "Acc@0.5", "pct"),
        ("acc@0.75", "Acc@0.75", "pct"),
        ("acc@0.95", "Acc@0.95", "pct"),
        ("acc_mean_50_75_95", "mean Acc@{.5,.75,.95}", "pct"),
        ("mean_iou", "mIoU", "pct"),
        ("centre_acc", "centre acc", "pct"),
    )

    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        return {"expression": strip_article(sample.query)}

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        return {"boxes": np.asarray(sample.boxes)[:1], "labels": [sample.query]}

    def _is_success(self, result: RewardResult, sample: Sample) -> bool:
        """Acc@0.5, as RefCOCO is reported: IoU of the first box >= 0.5."""
        return result.components.get("iou", 0.0) >= 0.5

    @classmethod
    def metrics(cls, records, samples, *, dataset=None, categories=None) -> dict[str, float]:
        """Acc@k, their RefCOCOg mean, mean IoU and centre accuracy of each answer's first box."""
        from perception_env.evaluation.metrics import grounding_metrics, parsed_boxes, parsed_of

        firsts = [(b[0] if len(b) else None) for b in (parsed_boxes(parsed_of(r)) for r in records)]
        truth = [np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)[0] for s in samples]
        return grounding_metrics(firsts, truth)
