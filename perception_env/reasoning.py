r"""Thinking answers: the option to ask for a reasoning chain before the answer, and how such answers are scored.

Perception-R1 (Yu et al., 2025) trains its perception policies *without* an explicit reasoning chain and
reports that perception does better without one; the R1-style vision recipes it compares against keep one
(R1-V, github.com/Deep-Agent/R1-V; VLM-R1, github.com/om-ai-lab/VLM-R1; Visual-RFT). An env built with
``reasoning="think"`` asks for R1's layout so the two can be compared on the same task::

    <think> reasoning process here </think><answer> answer here </answer>

* **Prompt** (:func:`think_prompt`): the question, then R1-V's instruction for image questions, which
  Perception-R1's released code (github.com/linkangheng/PR1, its ``r1v`` prompt) reuses:
  ``"{question} Output the thinking process in <think> </think> and final answer (number) in <answer>
  </answer> tags."``, with each task's own description of its answer where R1-V (a counting recipe) says
  "number". R1-V sends image questions with this user text only; its system prompt
  (:data:`R1V_SYSTEM_PROMPT`) goes with its text-only questions, so the observation stays
  ``{"image", "prompt"}`` and ``env.unwrapped.system_prompt`` offers it to a chat that wants one.
* **Reward** (:func:`score_thinking`): the task's own reward of the text inside ``<answer>…</answer>``
  plus ``think_format_weight`` (default 1.0, as R1-V adds its 1.0 format reward to its accuracy reward)
  when the whole answer follows R1-V's format rule, ``<think>.*?</think>\s*<answer>.*?</answer>`` matched
  against all of it (:func:`follows_think_format`; trailing stop tokens and white space at either end
  removed first). The reward lies in ``[0, task maximum + weight]``.
* **Oracle** (``oracle_thinking``): the env's perfect answer after an empty think block (``"empty"``, the
  default: scores the maximum, says nothing) or after a scene-derived chain (``"scene"``,
  :func:`scene_thinking`): the image's objects named in reading order, ``<think>circle, square,
  circle.</think><answer>3</answer>``, the enumeration a distilled R1-style model writes before a count,
  so a supervised warm start on oracle answers can teach a chain that is about the image.
* **No answer part** (no ``<answer>``, or one never closed): 0, what every task pays an answer it cannot
  read, and ``info["reason"]`` says which tag is missing; never an exception.

Everything here scans with ``str.find`` (no regular expression), so it takes time linear in the answer's
length whatever the tags hold: many ``<think>`` opens, nested or unclosed tags, huge think blocks
(timed in tests/test_formats_worst_case.py).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from perception_env.formats import ParsedAnswer, strip_stop_tokens
from perception_env.rewards.result import RewardResult

REASONING_MODES = ("none", "think")  # "none": the paper's choice, the answer alone
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# R1-V's system prompt (its grpo.py SYSTEM_PROMPT), word for word.
R1V_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>"
)
# R1-V's question template for images; "{answer}" is "number" there (counting), each task's own here.
THINK_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer ({answer}) in <answer> </answer> tags."
)
DEFAULT_THINK_FORMAT_WEIGHT = 1.0  # R1-V: format reward 1.0, added to the task (accuracy) reward
# what the oracle writes in its think block: nothing, or the scene's objects in reading order
ORACLE_THINKING = ("empty", "scene")
NO_OBJECTS = "no objects."  # the scene chain of an image without objects


def check_reasoning(reasoning: Any, think_format_weight: Any) -> tuple[str, float]:
    """``(reasoning, think_format_weight)`` checked: a mode of :data:`REASONING_MODES` and a finite weight
    ``>= 0``; ``ValueError`` naming the allowed values otherwise."""
    if not isinstance(reasoning, str) or reasoning not in REASONING_MODES:
        raise ValueError(
            f"reasoning must be one of {', '.join(map(repr, REASONING_MODES))} ('none': answer only, the "
            f"paper's choice; 'think': <think>...</think><answer>...</answer>), got {reasoning!r}"
        )
    number = isinstance(think_format_weight, numbers.Real) and not isinstance(think_format_weight, bool)
    if not number or not 0.0 <= float(think_format_weight) < math.inf:
        raise ValueError(f"think_format_weight must be a finite number >= 0, got {think_format_weight!r}")
    return reasoning, float(think_format_weight)


def check_oracle_thinking(oracle_thinking: Any) -> str:
    """``oracle_thinking`` checked: one of :data:`ORACLE_THINKING`; ``ValueError`` naming them otherwise."""
    if not isinstance(oracle_thinking, str) or oracle_thinking not in ORACLE_THINKING:
        raise ValueError(
            f"oracle_thinking must be one of {', '.join(map(repr, ORACLE_THINKING))} ('empty': "
            f"<think></think>; 'scene': the objects named in reading order), got {oracle_thinking!r}"
        )
    return oracle_thinking


def reading_order(boxes: Any) -> list[int]:
    """Indices of ``boxes`` (``[N, 4]`` x0, y0, x1, y1) in reading order: rows top to bottom, each row
    left to right, by centre. A row is the boxes whose centre lies less than half the median box height
    below the row's first (highest) centre, so a pixel of jitter between two objects of one grid row
    does not split it (ties keep the listed order)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return []
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0
    tolerance = 0.5 * float(np.median(boxes[:, 3] - boxes[:, 1]))
    rows: list[list[int]] = []
    for i in np.argsort(cy, kind="stable"):
        if rows and cy[i] - cy[rows[-1][0]] < tolerance:
            rows[-1].append(int(i))
        else:
            rows.append([int(i)])
    return [i for row in rows for i in sorted(row, key=lambda j: cx[j])]  # sorted() is stable


def scene_thinking(names: Sequence[str]) -> str:
    """The oracle's scene chain: ``names`` (the objects in reading order) as a sentence, ``"circle,
    square, circle."``; :data:`NO_OBJECTS` when there are none."""
    return f"{', '.join(names)}." if len(names) else NO_OBJECTS


def think_prompt(question: str, answer: str) -> str:
    """``question`` followed by R1-V's instruction to think in ``<think>`` and answer (``answer`` describes
    what, e.g. "number") in ``<answer>`` tags."""
    return f"{question} {THINK_INSTRUCTION.format(answer=answer)}"


def wrap_answer(answer: str, thinking: str = "") -> str:
    """``answer`` in R1's layout after a think block holding ``thinking`` (empty by default: the oracle)."""
    return f"{THINK_OPEN}{thinking}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


@dataclasses.dataclass(frozen=True)
class ThinkingAnswer:
    """One answer split into its parts (:func:`split_thinking`).

    ``thinking``: the text of the first think block (to its ``</think>``; unclosed, to the ``<answer>`` or
    the end), ``""`` without one. ``answer``: the text of the first ``<answer>…</answer>`` after the think
    block, white space stripped; ``None`` when there is none, ``problem`` then says why. ``tags_ok``: the
    whole answer follows R1-V's format rule (:func:`follows_think_format`).
    """

    thinking: str
    answer: str | None
    tags_ok: bool
    problem: str | None = None

    def lengths(self) -> dict[str, int]:
        """Lengths of the two parts, in characters and in white-space separated words."""
        answer = self.answer or ""
        return {
            "thinking_chars": len(self.thinking),
            "thinking_words": len(self.thinking.split()),
            "answer_chars": len(answer),
            "answer_words": len(answer.split()),
        }


def follows_think_format(text: str) -> bool:
    r"""Whether ``text`` is ``<think>A</think>W<answer>B</answer>`` for some A and B (any text, tags
    included) and white space W: R1-V's ``re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>",
    text, re.DOTALL)``, decided in one pass.

    The text must open with ``<think>`` and end with ``</answer>``; between them some ``</think>``, white
    space, ``<answer>`` must sit. The white-space runs after two ``</think>`` never overlap (each ends at a
    non-space, at the latest the next ``<``), so scanning every ``</think>`` is linear."""
    if not (text.startswith(THINK_OPEN) and text.endswith(ANSWER_CLOSE)):
        return False
    end = len(text) - len(ANSWER_CLOSE)  # where B must end: "<answer>" must close at or before it
    at = text.find(THINK_CLOSE, len(THINK_OPEN))
    while at != -1:
        after = _skip_space(text, at + len(THINK_CLOSE), end)
        if after + len(ANSWER_OPEN) <= end and text.startswith(ANSWER_OPEN, after):
            return True
        at = text.find(THINK_CLOSE, at + 1)
    return False


def _skip_space(text: str, start: int, end: int) -> int:
    """The first index ``>= start`` (at most ``end``) whose character is not white space."""
    while start < end and text[start].isspace():
        start += 1
    return start


def split_thinking(answer: str) -> ThinkingAnswer:
    """``answer`` split into its think block and its answer part; never raises. Trailing stop tokens are
    removed first, as every format does, and white space at either end (R1-V's rule would refuse a newline
    before the stop token that a chat model may write)."""
    text = strip_stop_tokens(answer if isinstance(answer, str) else repr(answer)).strip()
    think_at = text.find(THINK_OPEN)
    after_think = 0
    thinking = ""
    if think_at != -1:
        start = think_at + len(THINK_OPEN)
        close = text.find(THINK_CLOSE, start)
        if close != -1:
            thinking, after_think = text[start:close], close + len(THINK_CLOSE)
        else:  # unclosed: the thinking runs to the answer, if any
            answer_at = text.find(ANSWER_OPEN, start)
            thinking = text[start : len(text) if answer_at == -1 else answer_at]
            after_think = start if answer_at == -1 else answer_at
    tags_ok = follows_think_format(text)
    open_at = text.find(ANSWER_OPEN, after_think)
    if open_at == -1:
        return ThinkingAnswer(thinking, None, tags_ok, f"no {ANSWER_OPEN} tag after the thinking")
    start = open_at + len(ANSWER_OPEN)
    close = text.find(ANSWER_CLOSE, start)
    if close == -1:
        return ThinkingAnswer(
            thinking, None, tags_ok, f"the {ANSWER_OPEN} tag is never closed by {ANSWER_CLOSE}"
        )
    return ThinkingAnswer(thinking, text[start:close].strip(), tags_ok)


def score_thinking(
    answer: str, score_task: Callable[[str], RewardResult], weight: float = DEFAULT_THINK_FORMAT_WEIGHT
) -> tuple[RewardResult, ThinkingAnswer]:
    """A thinking answer's result: the task's (``score_task(answer part)``) plus ``weight`` when the tags
    follow R1-V's rule; components ``task_reward`` and ``think_format`` (1 or 0) join the task's. Without
    an answer part: reward 0 and the reason (what every task pays an answer it cannot read)."""
    split = split_thinking(answer)
    if split.answer is None:
        # the task's maximum, from a result of the task's own (its reward options set it)
        task_max = score_task("").max_reward
        result = RewardResult(
            reward=0.0,
            max_reward=task_max + weight,
            components={"task_reward": 0.0, "think_format": 0.0},
            parsed=ParsedAnswer.empty(problems=[split.problem]),
            reason=f"{split.problem}, so 0 (nothing to score)",
        )
        return result, split
    task = score_task(split.answer)
    think_format = 1.0 if split.tags_ok else 0.0
    reason = task.reason
    if not split.tags_ok:
        off = (
            f"not {THINK_OPEN}...{THINK_CLOSE}{ANSWER_OPEN}...{ANSWER_CLOSE} from start to end, "
            "so no think-format term"
        )
        reason = off if reason is None else f"{off}; {reason}"
    result = dataclasses.replace(
        task,
        reward=task.reward + weight * think_format,
        max_reward=task.max_reward + weight,
        components={**task.components, "task_reward": task.reward, "think_format": think_format},
        reason=reason,
    )
    return result, split


def reasoning_info(mode: str, answer: str, split: ThinkingAnswer | None) -> dict[str, Any]:
    """``info["reasoning"]``: the mode, the lengths of the thinking and of the answer part (characters and
    white-space separated words) and, thinking, the answer part scored (``""`` when none) and whether the
    tags follow R1-V's rule. The keys are the same for every answer of one env (vector envs batch them)."""
    if split is None:  # reasoning="none": the whole answer is the answer part
        text = strip_stop_tokens(answer if isinstance(answer, str) else repr(answer))
        return {"mode": mode, **ThinkingAnswer("", text, False).lengths()}
    return {
        "mode": mode,
        **split.lengths(),
        "answer_part": split.answer or "",
        "answer_found": split.answer is not None,
        "tags_ok": split.tags_ok,
    }
