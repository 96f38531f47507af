"""OCR: read all the text in the image."""

from __future__ import annotations

from typing import Any

from perception_env.core import PerceptionEnv
from perception_env.data import PageOcr, RenderedTextOCR, jsonl_source
from perception_env.data.loaders.jsonl import OCR
from perception_env.data.sample import Sample
from perception_env.reasoning import scene_thinking
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
    ``source`` ("synthetic", "page-ocr", "jsonl", "hf"), ``difficulty``, ``split``,
    ``data_kwargs``, ``prompt_template``, ``image_size``, ``render_mode="rgb_array"``,
    ``reasoning`` (``"none"``, or ``"think"``: R1's think-then-answer, :mod:`perception_env.reasoning`), ``think_format_weight``.

    ## Version History
    * v0: initial version.

    ```python
    import gymnasium as gym, perception_env
    env = gym.make("PerceptionR1/OCR-v0", difficulty="easy")
    obs, info = env.reset(seed=0)
    ```
    """

    task = "ocr"
    env_id = "PerceptionR1/OCR-v0"
    default_format = "text"
    formats = ("text",)
    default_prompts = {"text": "OCR this image:"}
    answer_descriptions = {"text": "the text in the image"}
    scorer = staticmethod(score_ocr)
    synthetic_data = RenderedTextOCR
    real_sources = {"page-ocr": jsonl_source(PageOcr)}
    jsonl_schema = OCR
    report_columns = (
        ("edit_distance", "edit dist ↓", "pct"),
        ("f1", "F1", "pct"),
        ("precision", "precision", "pct"),
        ("recall", "recall", "pct"),
        ("bleu", "BLEU", "pct"),
        ("meteor", "METEOR", "pct"),
        ("meteor_exact_stem", "METEOR (exact+stem, no WordNet)", "pct"),
    )
    render_text = True

    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        return {}

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        return {"text": sample.text}

    def scene_thinking(self, sample: Sample) -> str:
        """The page's characters spelled out in reading order, ``"c, a, t."`` (white space left out)."""
        return scene_thinking(list("".join(sample.text.split())))

    def _is_success(self, result: RewardResult, sample: Sample) -> bool:
        """The exact text (after collapsing white space)."""
        return result.components.get("edit_distance", 1.0) == 0.0

    @classmethod
    def metrics(cls, records, samples, *, dataset=None, categories=None) -> dict[str, float]:
        """Per page, then averaged: normalised edit distance, word-set P/R/F1, BLEU, METEOR (Fox/GOT)."""
        from perception_env.evaluation.metrics import ocr_metrics, parsed_of

        return ocr_metrics([parsed_of(r).get("text") for r in records], [s.text for s in samples])

    @classmethod
    def evaluation_notes(cls, samples, dataset, metrics) -> list[str]:
        from perception_env.evaluation.metrics import chinese_tokenizer, contains_chinese

        notes = []
        if any(contains_chinese(s.text) for s in samples) and chinese_tokenizer() != "jieba":
            notes.append(
                "Chinese text tokenised per character for word metrics (jieba not installed; the paper's "
                "Fox/GOT evaluation uses jieba: pip install 'perception-r1[zh]')"
            )
        if "meteor" not in metrics:
            notes.append(
                "METEOR: NLTK's WordNet corpus is not installed, so meteor_exact_stem = METEOR with exact and "
                "Porter-stem matches only (no synonyms); not comparable to the paper's METEOR"
            )
        return notes
