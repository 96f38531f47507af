"""The one-step perception environment every task shares.

An episode is one question about one image: ``reset`` draws a sample and
returns ``{"image", "prompt"}``; ``step(answer)`` parses the model's text,
scores it against the sample's targets and ends the episode. A task subclass
only says how to build the prompt, how to score and what the oracle answers.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from perception_env.data import make_dataset
from perception_env.data.sample import PerceptionDataset, Sample
from perception_env.formats import AnswerFormat, get_format
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, CoordinateFrame
from perception_env.resize import resize_sample
from perception_env.rewards import RewardResult
from perception_env.spaces import UnicodeText, observation_space

Observation = dict[str, Any]  # {"image": [H, W, 3] uint8, "prompt": str}

# Longest prompt/answer we accept as valid actions/observations (characters).
MAX_TEXT_LENGTH = 1 << 16


class PerceptionEnv(gym.Env[Observation, str]):
    """Base class: one image, one question, one answer, one reward.

    Subclasses set ``task``, ``default_format``, ``formats`` (those allowed),
    ``default_prompts`` (format name -> template) and implement
    :meth:`_prompt_fields`, :meth:`_score` and :meth:`_oracle_targets`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}

    task: str = ""
    default_format: str = ""
    formats: tuple[str, ...] = ()
    default_prompts: Mapping[str, str] = {}

    def __init__(
        self,
        *,
        dataset: PerceptionDataset | None = None,
        source: str = "synthetic",
        split: str = "train",
        difficulty: str = "medium",
        data_kwargs: Mapping[str, Any] | None = None,
        answer_format: str | None = None,
        prompt_template: str | None = None,
        image_size: tuple[int, int] | None = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        render_mode: str | None = None,
    ):
        if dataset is None:
            kwargs = dict(data_kwargs or {})
            if source == "synthetic":
                kwargs.setdefault("difficulty", difficulty)
            dataset = make_dataset(self.task, source=source, split=split, **kwargs)
        if len(dataset) == 0:
            raise ValueError(f"dataset {getattr(dataset, 'name', dataset)!r} is empty")
        self.dataset = dataset
        self.answer_format: AnswerFormat = get_format(answer_format or self.default_format)
        if self.answer_format.name not in self.formats:
            raise ValueError(
                f"{type(self).__name__} answers in one of {self.formats}, not {self.answer_format.name!r}"
            )
        self.prompt_template = prompt_template or self.default_prompts[self.answer_format.name]
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode

        self.observation_space = observation_space(self.image_size, MAX_TEXT_LENGTH)
        self.action_space = UnicodeText(MAX_TEXT_LENGTH)

        self._index: int | None = None
        self._sample: Sample | None = None
        self._observation: Observation | None = None
        self._last: RewardResult | None = None

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Draw a sample (``options={"index": i}`` replays sample ``i`` exactly)."""
        super().reset(seed=seed)
        options = options or {}
        if "index" in options:
            index = int(options["index"])
            if not -len(self.dataset) <= index < len(self.dataset):
                raise IndexError(f"index {index} out of range for a dataset of {len(self.dataset)} samples")
            index %= len(self.dataset)
        else:
            index = int(self.np_random.integers(len(self.dataset)))
        sample = self.dataset[index]
        if self.image_size is not None:
            sample = resize_sample(sample, *self.image_size)
        self._index, self._sample, self._last = index, sample, None
        self._observation = {"image": sample.load_image(), "prompt": self.prompt()}
        return self._fresh_observation(), self._reset_info()

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Score ``action`` (the model's answer; trailing stop tokens allowed); the episode always ends."""
        if self._sample is None or self._observation is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        result = self._score(action, self._sample)
        self._last = result
        info = {
            **self._reset_info(),
            **result.to_info(),
            "is_success": bool(self._is_success(result)),
            "answer": action if isinstance(action, str) else repr(action),
            "target": self._target_info(self._sample),
        }
        return self._fresh_observation(), float(result.reward), True, False, info

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the image with targets and the last answer's predictions drawn."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' to gym.make")
            return None
        if self._sample is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        from perception_env.render import render_sample

        return render_sample(self._sample, self._last, task=self.task)

    # ----------------------------------------------------------------- helpers
    @property
    def sample(self) -> Sample:
        """The current sample (after reset)."""
        if self._sample is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self._sample

    @property
    def frame(self) -> CoordinateFrame | None:
        """The coordinate frame of answers about the current image (None for text answers)."""
        s = self.sample
        return self.answer_format.make_frame(
            s.width, s.height, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )

    def prompt(self) -> str:
        """The current question, from the template and the sample."""
        return self.prompt_template.format(**self._prompt_fields(self.sample))

    def oracle_answer(self, exact: bool = False) -> str:
        """A perfect answer for the current sample, in this env's answer format.

        Coordinates are integers, as a model writes them, so a box of a few pixels can lose a
        little IoU to rounding. ``exact=True`` writes unrounded coordinates (4 decimals) where the
        format allows them (Qwen2.5-VL JSON), for evaluations that must reach AP 100 exactly;
        the Qwen2-VL formats are integers in ``[0, 1000)`` by definition and ignore it.
        """
        targets = self._oracle_targets(self.sample)
        if exact and self.answer_format.fractional_coordinates:
            return self.answer_format.write(frame=self.frame, decimals=4, **targets)
        return self.answer_format.write(frame=self.frame, **targets)

    def _fresh_observation(self) -> Observation:
        # A new, writable array per call: users keep and may modify what they are given.
        assert self._observation is not None
        return {
            "image": np.array(self._observation["image"], copy=True),
            "prompt": self._observation["prompt"],
        }

    def _reset_info(self) -> dict[str, Any]:
        s = self.sample
        frame = self.frame
        return {
            "task": self.task,
            "index": self._index,
            "sample_id": s.sample_id,
            "image_size": [s.width, s.height],
            "answer_format": self.answer_format.name,
            "frame": None if frame is None else frame.describe(),
        }

    def _target_info(self, s: Sample) -> dict[str, Any]:
        return {
            "boxes": np.asarray(s.boxes).tolist(),
            "labels": list(s.labels),
            "points": np.asarray(s.points).tolist(),
            "query": s.query,
            "text": s.text,
        }

    # ------------------------------------------------------ subclass interface
    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        raise NotImplementedError

    def _score(self, answer: str, sample: Sample) -> RewardResult:
        raise NotImplementedError

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        raise NotImplementedError

    def _is_success(self, result: RewardResult) -> bool:
        """The task's pass/fail verdict (``info["is_success"]``), as the paper's accuracy metrics count it."""
        raise NotImplementedError


def strip_article(phrase: str) -> str:
    """'the red circle' -> 'red circle', so templates can say 'the {expression}'."""
    phrase = phrase.strip()
    return phrase[4:] if phrase.lower().startswith("the ") else phrase
