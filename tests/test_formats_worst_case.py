"""Every format parses in time linear in the answer, on every worst-case family (tests/worst_case_answers.py).

A complexity test, not a speed test: each answer is timed at n and 4n characters; linear parsing gives a
ratio near 4, quadratic 16, cubic 64. The bounds are generous (other processes share the CPU): the ratio
must stay under ``MAX_RATIO`` unless the 4n time is under ``NOISE_FLOOR_S`` (too short to time), and no
parse may take longer than ``CAP_S``; a family that misses is timed again, best of ``RETIME_REPEATS``, as
a preempted run can take 100 ms more. Parses run in a forked child that is killed past the cap, so a
catastrophic backtracker fails the test instead of hanging it (``"```" + 2,000 spaces`` took 55 s).

Thinking answers (``reasoning="think"``) are timed the same way through the env's whole reading of them:
:func:`~perception_env.reasoning.split_thinking` (the tags, R1-V's format rule) and the format's parse of
the ``<answer>`` part, with every family as the whole answer, inside the think block and inside the answer.
"""

from __future__ import annotations

import multiprocessing
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception_env.formats import FORMATS
from perception_env.formats.plain import _COUNT_RE, _is_just_a_number
from perception_env.formats.qwen25 import _find_fence
from perception_env.reasoning import split_thinking, wrap_answer
from tests.worst_case_answers import WORST_CASES

MAX_RATIO = 10.0
NOISE_FLOOR_S = 0.05
CAP_S = 4.0
RETIME_REPEATS = 3


# Where a family's text goes in a thinking answer: all of it, the think block, the answer part.
THINKING_PLACES = {
    "whole": lambda text: text,
    "in think": lambda text: wrap_answer("", thinking=text),
    "in answer": lambda text: wrap_answer(text),
}


def _answers(family: str, n: int, thinking: bool) -> list[str]:
    text = WORST_CASES[family](n)
    return [place(text) for place in THINKING_PLACES.values()] if thinking else [text]


def _read_thinking(fmt, answer: str, frame) -> None:
    """What the env reads of a thinking answer: its parts, then the format's parse of the answer part."""
    split = split_thinking(answer)
    if split.answer is not None:
        fmt.parse(split.answer, frame)


def _time_families(
    fmt_name: str, families: list[str], sizes: tuple[int, ...], repeats: int, conn, thinking: bool = False
) -> None:
    """Child: sends ``(family, n, None)`` before a parse, ``(family, n, seconds)`` after (best of repeats;
    ``thinking``: the sum over the family's places in a thinking answer)."""
    fmt = FORMATS[fmt_name]
    frame = fmt.make_frame(640, 480)
    for family in families:
        for n in sizes:
            answers = _answers(family, n, thinking)
            conn.send((family, n, None))
            total = 0.0
            for answer in answers:
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    if thinking:
                        _read_thinking(fmt, answer, frame)
                    else:
                        fmt.parse(answer, frame)
                    best = min(best, time.perf_counter() - t0)
                total += best
            conn.send((family, n, total))
    conn.send(None)


def family_times(
    fmt_name: str, families: list[str], sizes: tuple[int, ...], repeats: int, thinking: bool = False
) -> dict:
    """``{(family, n): seconds}`` for ``fmt_name``; fails naming the family whose parse runs past CAP_S."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    args = (fmt_name, families, sizes, repeats, child, thinking)
    proc = ctx.Process(target=_time_families, args=args, daemon=True)
    proc.start()
    times: dict[tuple[str, int], float] = {}
    current = None
    try:
        while True:
            if not parent.poll(CAP_S * repeats + 5.0):  # + building the answer and the pipe
                pytest.fail(f"{fmt_name}: parsing {current} did not finish in {CAP_S * repeats + 5:.0f} s")
            message = parent.recv()
            if message is None:
                return times
            family, n, seconds = message
            current = f"{family!r} at n={n:,}"
            if seconds is not None:
                times[(family, n)] = seconds
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def _super_linear(times: dict, families: list[str], n: int) -> list[str]:
    bad = []
    for family in families:
        t1, t4 = times[(family, n)], times[(family, 4 * n)]
        if t4 > CAP_S or (t4 > NOISE_FLOOR_S and t4 / max(t1, 1e-9) > MAX_RATIO):
            bad.append(family)
    return bad


def assert_linear(fmt_name: str, n: int, repeats: int, thinking: bool = False) -> None:
    families = list(WORST_CASES)
    times = family_times(fmt_name, families, (n, 4 * n), repeats, thinking)
    suspects = _super_linear(times, families, n)
    if suspects:
        times.update(family_times(fmt_name, suspects, (n, 4 * n), RETIME_REPEATS, thinking))
    bad = [
        f"{f!r}: {times[(f, n)] * 1e3:.1f} ms at n={n:,}, {times[(f, 4 * n)] * 1e3:.1f} ms at 4n"
        for f in _super_linear(times, suspects, n)
    ]
    what = "thinking answers" if thinking else "answers"
    assert not bad, f"{fmt_name} parses {what} super-linearly:\n" + "\n".join(bad)


@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_every_format_is_linear_on_worst_cases_at_64k(fmt_name):
    """16 k vs 64 k characters (64 k is the envs' action-length limit): fast, and the two backtracking
    regexes this replaced (fence: cubic; bare number: quadratic) take minutes here."""
    assert_linear(fmt_name, 1 << 14, repeats=2)


@pytest.mark.slow
@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_every_format_is_linear_on_worst_cases_at_1mb(fmt_name):
    """256 k vs 1 M characters: the scorers take any string, and a model's runaway answer can be long."""
    assert_linear(fmt_name, 1 << 18, repeats=1)  # ~0.1 s per parse: long enough to time once


@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_every_format_reads_thinking_answers_linearly_at_64k(fmt_name):
    """Every family as a whole thinking answer, in its think block and in its answer part, 16 k vs 64 k."""
    assert_linear(fmt_name, 1 << 14, repeats=2, thinking=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_every_format_reads_thinking_answers_linearly_at_1mb(fmt_name):
    assert_linear(fmt_name, 1 << 18, repeats=1, thinking=True)


# ------------------------------------------------------------------ the scanners read what the regexes read
# The backtracking regexes they replaced, as references on inputs small enough for them.
OLD_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
OLD_JUST_A_NUMBER_RE = re.compile(r"\s*(?:[0-9]+|" + "|".join(NUMBER_WORDS) + r")\s*\.?\s*", re.IGNORECASE)
OLD_COUNT_RE = re.compile(r"(?<![0-9.])(-?[0-9]+)|\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)

FENCE_PIECES = ["```", "`", " ", "\t", "json", "JSON", "\n", "x", "[]"]
NUMBER_PIECES = ["7", "12", " ", "\n", ".", "!", "-", "seven", "SEVEN", "x", "twenty"]
fence_text = st.lists(st.sampled_from(FENCE_PIECES), max_size=14).map("".join)
number_text = st.lists(st.sampled_from(NUMBER_PIECES), max_size=10).map("".join)


@settings(max_examples=300, deadline=None)
@given(fence_text)
def test_find_fence_matches_the_old_fence_regex(text):
    old = OLD_FENCE_RE.search(text)
    new = _find_fence(text)
    assert (old is None) == (new is None)
    if old is not None:
        assert new == (old.start(), old.start(1), old.end(1), old.end())


@settings(max_examples=300, deadline=None)
@given(number_text)
def test_number_scanners_match_the_old_regexes_on_ascii(text):
    assert _is_just_a_number(text) == (OLD_JUST_A_NUMBER_RE.fullmatch(text) is not None)
    old, new = OLD_COUNT_RE.search(text), _COUNT_RE.search(text)
    assert (old and old.span(), old and old.groups()) == (new and new.span(), new and new.groups())
