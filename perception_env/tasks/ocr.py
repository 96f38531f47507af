"""OCR: read all the text in the image."""

from __future__ import annotations

from typing import Any

from perception_env.core import PerceptionEnv
from perception_env.data.sample import Sample
from perception_env.rewards import RewardResult, score_ocr


class OCREnv(PerceptionEnv):
    """Transcribe the text of a rendered line or page.

    ## Description
    One-step episode, as PageOCR in Perception-R1.

    ## Action Space
    ``UnicodeText``: the transcription (format ``"text"``).
    The answer may end as a chat model ends it: trailing ``<|im_end|>`` / ``<|endoftext|>``
    tokens (repeated, white space among them) are removed before parsing; text after a stop
    token counts as extra text (characters of the transcription) and the answer is not well-formed.

    ## Observation Space
    ``Dict(image, prompt)``; default prompt ``OCR this image:``.

    ## Rewards
    ``max(0, 1 - edit_distance(pred, gt) / max(len(pred), len(gt)))`` after
    collapsing white space, in ``[0, 1]``.

    ## Starting State
    A sample drawn with ``self.np_random``; ``reset(options={"index": i})`` replays sample ``i``.

    ## Episode End
    After one step (``terminated=True``).

    ## Arguments
    ``source`` ("synthetic", "page-ocr", "jsonl"), ``difficulty``, ``split``,
    ``data_kwargs``, ``prompt_template``, ``image_size``, ``render_mode="rgb_array"``.

    ## Version History
    * v0: initial version.

    ```python
    import gymnasium as gym, perception_env
    env = gym.make("PerceptionR1/OCR-v0", difficulty="easy")
    obs, info = env.reset(seed=0)
    ```
    """

    task = "ocr"
    default_format = "text"
    formats = ("text",)
    default_prompts = {"text": "OCR this image:"}

    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        return {}

    def _score(self, answer: str, sample: Sample) -> RewardResult:
        return score_ocr(answer, sample, self.answer_format)

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        return {"text": sample.text}

    def _is_success(self, result: RewardResult) -> bool:
        """The exact text (after collapsing white space)."""
        return result.components.get("edit_distance", 1.0) == 0.0
