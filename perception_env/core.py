"""The one-step perception environment, and what a task defines.

An episode is one question about one image: ``reset`` draws a sample and returns ``{"image", "prompt"}``;
``step(answer)`` scores the model's text against the sample's targets and ends the episode;
``score(answer)`` does the same without moving the env (the trainer's G answers, the evaluation).

A task is one subclass of :class:`PerceptionEnv` (``perception_env/tasks/*.py``): its name and Gymnasium id,
answer formats and prompts, scorer and reward options, oracle, pass/fail verdict, built-in and real data,
the paper's metrics, what a render draws and the answer length it needs. ``perception_env.tasks`` lists
the tasks; every registry (gym ids, data sources, metrics, report columns) is built from that list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from perception_env.data.loaders import HfDataset, JsonlDataset, RecordSchema
from perception_env.data.sample import PerceptionDataset, Sample
from perception_env.formats import AnswerFormat, get_format
from perception_env.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, CoordinateFrame
from perception_env.reasoning import (
    DEFAULT_THINK_FORMAT_WEIGHT,
    R1V_SYSTEM_PROMPT,
    check_oracle_thinking,
    check_reasoning,
    reading_order,
    reasoning_info,
    scene_thinking,
    score_thinking,
    think_prompt,
    wrap_answer,
)
from perception_env.resize import resize_sample
from perception_env.rewards import RewardResult
from perception_env.spaces import UnicodeText, observation_space

Observation = dict[str, Any]  # {"image": [H, W, 3] uint8, "prompt": str}

# Longest prompt/answer we accept as valid actions/observations (characters).
MAX_TEXT_LENGTH = 1 << 16

ANY_TASK_SOURCES = ("jsonl", "hf")  # your own data, in the JSONL schema of the task (its jsonl_schema)


@dataclasses.dataclass(frozen=True)
class Scored:
    """One answer scored against one sample, the env unmoved.

    ``reward`` and ``info`` are exactly what ``step`` returns for the answer; ``result`` is the whole
    :class:`RewardResult`, whose ``parsed`` holds the answer's objects in pixels of the original image at
    full precision (``info["parsed"]`` rounds them to 0.01 px); ``sample`` is the sample scored against.
    """

    reward: float
    info: dict[str, Any]
    result: RewardResult
    sample: Sample


class PerceptionEnv(gym.Env[Observation, str]):
    """Base class: one image, one question, one answer, one reward.

    A task subclass sets the class attributes below and implements :meth:`_prompt_fields`,
    :meth:`_oracle_targets`, :meth:`_is_success` and :meth:`metrics`.
    """

    # One step per episode: a vector env should reset a finished env in the step that finished it
    # (SAME_STEP), not spend the next step on the reset (Gymnasium's default, NEXT_STEP).
    metadata = {"render_modes": ["rgb_array"], "render_fps": 1, "autoreset_mode": AutoresetMode.SAME_STEP}

    # ------------------------------------------------------------ the task's definition
    task: ClassVar[str] = ""  # its name: make_dataset(task, ...), task_metrics, the report's tables
    env_id: ClassVar[str] = ""  # its Gymnasium id
    default_format: ClassVar[str] = ""
    formats: ClassVar[tuple[str, ...]] = ()  # the answer formats it reads
    default_prompts: ClassVar[Mapping[str, str]] = {}  # format name -> prompt template
    # format name -> what the answer is, in reasoning="think"'s instruction ("final answer (number) in ...")
    answer_descriptions: ClassVar[Mapping[str, str]] = {}
    # (answer, sample, fmt, frame, config) -> RewardResult; never raises for any answer
    scorer: ClassVar[Callable[..., RewardResult]]
    reward_config_class: ClassVar[type | None] = None  # the scorer's options (reward_config=), if any
    synthetic_data: ClassVar[Callable[..., PerceptionDataset] | None] = None  # source "synthetic"
    # real data: source name -> builder(split, **data_kwargs) (perception_env.data)
    real_sources: ClassVar[Mapping[str, Callable[..., PerceptionDataset]]] = {}
    # its lines in the sources "jsonl" and "hf" (perception_env.data.loaders.jsonl); None: neither source
    jsonl_schema: ClassVar[RecordSchema | None] = None
    max_answer_tokens: ClassVar[int] = (
        768  # the paper's longest answer: the default of eval's --max-new-tokens
    )
    report_columns: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (metric, header, "pct"|"num"|"int")
    # what render() draws besides the boxes: target labels, points, the text read and the truth
    render_labels: ClassVar[bool] = False
    render_points: ClassVar[bool] = False
    render_text: ClassVar[bool] = False

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
        reward_config: Any = None,
        image_size: tuple[int, int] | None = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        render_mode: str | None = None,
        reasoning: str = "none",
        think_format_weight: float = DEFAULT_THINK_FORMAT_WEIGHT,
        oracle_thinking: str = "empty",
    ):
        self.reward_config = self.make_reward_config(reward_config)
        # "think": <think>...</think><answer>...</answer> asked for and scored (perception_env.reasoning)
        self.reasoning, self.think_format_weight = check_reasoning(reasoning, think_format_weight)
        # R1-V's system prompt for a chat that wants one; the observation's prompt carries the instruction
        self.system_prompt: str | None = R1V_SYSTEM_PROMPT if self.reasoning == "think" else None
        # the oracle's think block: "empty" or "scene" (the objects in reading order, :meth:`scene_thinking`)
        self.oracle_thinking = check_oracle_thinking(oracle_thinking)
        if dataset is None:
            kwargs = dict(data_kwargs or {})
            if source == "synthetic":
                kwargs.setdefault("difficulty", difficulty)
            dataset = self.make_dataset(source, split, **kwargs)
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
        self._last_answer: str | None = None
        self._finished = False  # the episode's one step was taken: step again only after reset

    @classmethod
    def sources(cls) -> tuple[str, ...]:
        """The data sources of this task: ``synthetic`` (when it has built-in data), its real sources, and
        ``jsonl`` and ``hf`` (when it declares a :attr:`jsonl_schema`)."""
        built_in = ("synthetic",) if cls.synthetic_data is not None else ()
        return (*built_in, *cls.real_sources, *(ANY_TASK_SOURCES if cls.jsonl_schema is not None else ()))

    @classmethod
    def make_dataset(
        cls, source: str = "synthetic", split: str = "train", **kwargs: Any
    ) -> PerceptionDataset:
        """The task's dataset from ``source`` (one of :meth:`sources`); ``kwargs`` go to its builder.

        ``synthetic``: :attr:`synthetic_data` (``difficulty``, ``size``, ``seed``); ``jsonl``: ``path`` (a
        file in the task's :attr:`jsonl_schema`); ``hf``: ``path`` to a local Hugging Face dataset,
        ``columns`` mapping schema fields to its columns; a real source: its builder ``(split, **kwargs)``.
        """
        if source not in cls.sources():
            if source == "synthetic":
                raise ValueError(
                    f"task {cls.task!r} has no built-in data: give source= (one of {cls.sources()})"
                )
            raise ValueError(f"task {cls.task!r} reads no source {source!r}; its sources: {cls.sources()}")
        if source == "synthetic":
            return cls.synthetic_data(split=split, **kwargs)
        if source == "jsonl":
            if "path" not in kwargs:
                raise ValueError("source 'jsonl' needs path= (a JSONL file)")
            return JsonlDataset(kwargs.pop("path"), cls.jsonl_schema, **kwargs)
        if source == "hf":
            if "path" not in kwargs:
                raise ValueError(
                    "source 'hf' needs path= (a save_to_disk folder, a parquet file or a folder of them)"
                )
            return HfDataset(kwargs.pop("path"), cls.jsonl_schema, split=split, **kwargs)
        return cls.real_sources[source](split, **kwargs)

    @classmethod
    def make_reward_config(cls, value: Any) -> Any:
        """``reward_config=`` as the task's :attr:`reward_config_class`: an instance, a dict of its fields, or
        None (the defaults). A task without reward options takes None only."""
        config_cls = cls.reward_config_class
        if config_cls is None:
            if value is not None:
                raise ValueError(
                    f"{cls.__name__} has no reward options; reward_config must be None, got {value!r}"
                )
            return None
        if value is None:
            return config_cls()
        if isinstance(value, Mapping):
            known = [f.name for f in dataclasses.fields(config_cls)]
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise ValueError(
                    f"reward_config: {config_cls.__name__} has no option {', '.join(map(repr, unknown))}; "
                    f"its options: {', '.join(known)}"
                )
            return config_cls(**value)
        if not isinstance(value, config_cls):
            raise TypeError(
                f"reward_config must be a {config_cls.__name__} or a dict, got {type(value).__name__}"
            )
        return value

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Draw a sample (``options={"index": i}`` replays sample ``i`` exactly)."""
        super().reset(seed=seed)
        options = options or {}
        if "index" in options:
            index, sample = self._load(options["index"])
        else:
            index, sample = self._load(int(self.np_random.integers(len(self.dataset))))
        self._index, self._sample, self._last, self._finished = index, sample, None, False
        self._observation = {"image": sample.load_image(), "prompt": self.prompt()}
        return self._fresh_observation(), self._reset_info(index, sample)

    def step(self, action: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Score ``action`` (the model's answer; trailing stop tokens allowed); the episode always ends.

        Stepping an ended episode raises :class:`gymnasium.error.ResetNeeded` (Gymnasium's contract: reset after
        ``terminated``); :meth:`score` scores more answers to the same sample without stepping."""
        if self._sample is None or self._observation is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._finished:
            raise gym.error.ResetNeeded(
                f"{type(self).__name__}: the episode ended with the previous step (one answer per episode); "
                "call reset() before stepping again (reset(options={'index': i}) replays the same sample), "
                "or score more answers to this sample with env.unwrapped.score(answer), which does not step"
            )
        scored = self.score(action)
        self._last, self._last_answer, self._finished = scored.result, scored.info["answer"], True
        return self._fresh_observation(), scored.reward, True, False, scored.info

    def score(self, answer: str, index: int | None = None) -> Scored:
        """Score ``answer`` against the current sample (or sample ``index``) without moving the env.

        ``reward`` and ``info`` are those ``step(answer)`` would return (``index``: after
        ``reset(options={"index": index})``); the current sample, the render and the RNG stay as they are.
        """
        if index is None:
            index, sample = self._index, self.sample
        else:
            index, sample = self._load(index)
        return self.score_sample(answer, sample, index=index)

    def score_sample(self, answer: str, sample: Sample, index: int | None = None) -> Scored:
        """Score ``answer`` against any ``sample`` as this env scores its own (the same format, frame and
        reward options): a sample rebuilt from an exported ground truth (:mod:`perception_env.integrations`).
        ``index``: what ``info["index"]`` says. The env does not move."""
        split = None
        if self.reasoning == "think":  # the task's reward on the <answer> part, plus the tag-format term
            result, split = score_thinking(
                answer, lambda part: self._score(part, sample), self.think_format_weight
            )
        else:
            result = self._score(answer, sample)
        answered = split is None or split.answer is not None
        info = {
            **self._reset_info(index, sample),
            **result.to_info(),
            "is_success": answered and bool(self._is_success(result, sample)),
            "answer": answer if isinstance(answer, str) else repr(answer),
            "target": self._target_info(sample),
            "reasoning": reasoning_info(self.reasoning, answer, split),
        }
        return Scored(float(result.reward), info, result, sample)

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the image with targets and the last answer's predictions drawn, every frame of the
        env one size (:attr:`render_panel` and the text band under it), as video recorders need."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' to gym.make")
            return None
        if self._sample is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        from perception_env.render import render_sample

        return render_sample(
            self._sample,
            self._last,
            labels=self.render_labels,
            points=self.render_points,
            text=self.render_text,
            answer=None if self._last is None else self._last_answer,
            panel=self.render_panel,
        )

    @property
    def render_panel(self) -> tuple[int, int]:
        """``(width, height)`` of the image in every frame :meth:`render` draws: the env's images all have one
        size (``image_size=``, or the built-in data's), upscaled if small; else each is fitted into 640 x 640."""
        from perception_env.render import panel_size

        return panel_size(self.image_size or getattr(self.dataset, "image_size", None))

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
        return self.frame_for(self.sample)

    def frame_for(self, sample: Sample) -> CoordinateFrame | None:
        """The coordinate frame of answers about ``sample``'s image (None for text answers)."""
        return self.answer_format.make_frame(
            sample.width, sample.height, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )

    def prompt(self) -> str:
        """The current question, from the template and the sample (``reasoning="think"``: then R1-V's
        instruction to think in ``<think>`` and answer in ``<answer>`` tags)."""
        question = self.prompt_template.format(**self._prompt_fields(self.sample))
        if self.reasoning == "think":
            return think_prompt(question, self.answer_descriptions.get(self.answer_format.name, "answer"))
        return question

    def oracle_answer(self, exact: bool = False, object_order: Sequence[int] | None = None) -> str:
        """A perfect answer for the current sample, in this env's answer format.

        Coordinates are integers, as a model writes them, so a box of a few pixels can lose a
        little IoU to rounding. ``exact=True`` writes unrounded coordinates (4 decimals) where the
        format allows them (Qwen2.5-VL JSON), for evaluations that must reach AP 100 exactly;
        the Qwen2-VL formats are integers in ``[0, 1000)`` by definition and ignore it.
        ``object_order``: list the target objects in this order (a permutation of their indices;
        ``None``: as the dataset lists them), e.g. the supervised data's order (agents/sft.py).
        With ``reasoning="think"`` the answer follows a think block: empty, ``<think></think><answer>…</answer>``,
        or with ``oracle_thinking="scene"`` the scene's chain (:meth:`scene_thinking`).
        """
        targets = reorder_targets(self._oracle_targets(self.sample), object_order)
        if exact and self.answer_format.fractional_coordinates:
            answer = self.answer_format.write(frame=self.frame, decimals=4, **targets)
        else:
            answer = self.answer_format.write(frame=self.frame, **targets)
        if self.reasoning != "think":
            return answer
        return wrap_answer(
            answer, self.scene_thinking(self.sample) if self.oracle_thinking == "scene" else ""
        )

    def scene_thinking(self, sample: Sample) -> str:
        """The chain an R1-style model would write before answering about ``sample``: its objects named in
        reading order (``"circle, square, circle."``, :func:`perception_env.reasoning.reading_order`);
        labels without one box each are named as listed. A task whose answer is not about objects
        (OCR) says what it reads instead."""
        labels = list(sample.labels)
        if len(labels) == len(sample.boxes):
            labels = [labels[i] for i in reading_order(sample.boxes)]
        return scene_thinking(labels)

    def _load(self, index: Any) -> tuple[int, Sample]:
        """Sample ``index`` (negative counts from the end) as the env shows it: resized to ``image_size``."""
        index = int(index)
        if not -len(self.dataset) <= index < len(self.dataset):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.dataset)} samples")
        index %= len(self.dataset)
        sample = self.dataset[index]
        if self.image_size is not None:
            sample = resize_sample(sample, *self.image_size)
        return index, sample

    def _score(self, answer: str, sample: Sample) -> RewardResult:
        return type(self).scorer(
            answer, sample, self.answer_format, self.frame_for(sample), self.reward_config
        )

    def _fresh_observation(self) -> Observation:
        # A new, writable array per call: users keep and may modify what they are given.
        assert self._observation is not None
        return {
            "image": np.array(self._observation["image"], copy=True),
            "prompt": self._observation["prompt"],
        }

    def _reset_info(self, index: int | None, sample: Sample) -> dict[str, Any]:
        frame = self.frame_for(sample)
        return {
            "task": self.task,
            "index": index,
            "sample_id": sample.sample_id,
            "image_size": [sample.width, sample.height],
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
            **({"targets": s.targets} if s.targets else {}),  # a task's own target fields
        }

    # ------------------------------------------------------ subclass interface
    def _prompt_fields(self, sample: Sample) -> dict[str, str]:
        """The fields of the prompt template for ``sample``."""
        raise NotImplementedError

    def _oracle_targets(self, sample: Sample) -> dict[str, Any]:
        """What the oracle writes for ``sample``: keyword arguments of ``AnswerFormat.write``."""
        raise NotImplementedError

    def _is_success(self, result: RewardResult, sample: Sample) -> bool:
        """The task's pass/fail verdict (``info["is_success"]``), as the paper's accuracy metrics count it."""
        raise NotImplementedError

    @classmethod
    def metrics(
        cls,
        records: Sequence[Mapping[str, Any]],
        samples: Sequence[Sample],
        *,
        dataset: Any = None,
        categories: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """The paper's metrics of the task (fractions) from scored answers: ``records[i]`` holds ``"parsed"``
        (boxes / points in original pixels, labels, count, text) and ``"answer_format"``, about
        ``samples[i]`` (see :func:`perception_env.evaluation.task_metrics`)."""
        raise NotImplementedError

    @classmethod
    def evaluation_notes(
        cls, samples: Sequence[Sample], dataset: Any, metrics: Mapping[str, float]
    ) -> list[str]:
        """What an evaluation report should say about how the metrics were computed (none by default)."""
        return []


def strip_article(phrase: str) -> str:
    """'the red circle' -> 'red circle', so templates can say 'the {expression}'."""
    phrase = phrase.strip()
    return phrase[4:] if phrase.lower().startswith("the ") else phrase


def reorder_targets(targets: dict[str, Any], order: Sequence[int] | None) -> dict[str, Any]:
    """``targets`` (an oracle's ``boxes`` / ``points`` / ``labels``) with the objects listed in ``order``.

    ``order`` must be a permutation of ``range(n)``, ``n`` the number of objects; ``None`` keeps them."""
    if order is None:
        return targets
    order = [int(i) for i in order]
    out = dict(targets)
    for key in ("boxes", "points", "labels"):
        values = targets.get(key)
        if values is None:
            continue
        if sorted(order) != list(range(len(values))):
            raise ValueError(f"object_order {order} is not a permutation of the {len(values)} target {key}")
        out[key] = np.asarray(values)[order] if key != "labels" else [values[i] for i in order]
    return out
