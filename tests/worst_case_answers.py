"""Answers built to be slow to parse: long runs, unclosed structures, deep nesting, many objects.

``WORST_CASES[name](n)`` is an answer of about ``n`` characters. Every format is timed on every
family (tests/test_formats_worst_case.py checks linear time; benchmarks/rewards.py reports the
slowest 1 MB answer per format). Families aim at what a backtracking regex or a quadratic scan
trips on: runs of one character where a pattern must give back what it took, a structure opened
and never closed, and tokens that each start a long failed match.
"""

from __future__ import annotations

from collections.abc import Callable

R, RE, B, BE = "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"


def repeat(unit: str, n: int) -> str:
    """``unit`` repeated to about ``n`` characters (at least once)."""
    return unit * max(1, n // len(unit))


WORST_CASES: dict[str, Callable[[int], str]] = {
    # runs of white space (number: "\s*" around the number; fences: "[ \t]*" after ```)
    "spaces": lambda n: " " * n,
    "newlines": lambda n: "\n" * n,
    "number, spaces, junk": lambda n: "7" + " " * n + "!",
    "number, spaces, period, spaces, junk": lambda n: "7" + " " * (n // 2) + "." + " " * (n // 2) + "!",
    "number, spaces, stop token": lambda n: "7" + " " * n + "<|im_end|>",
    # fences (qwen2.5-vl)
    "fence, spaces, no close": lambda n: "```" + " " * n,
    "fence, tabs, json, spaces, no close": lambda n: "```" + "\t" * (n // 2) + "json" + " " * (n // 2),
    "fence json, objects, no close": lambda n: "```json\n" + repeat('[{"bbox_2d": [1, 2, 3, 4]}, ', n),
    "backticks": lambda n: "`" * n,
    "fences, spaced": lambda n: repeat("``` ", n),
    # digits and numbers
    "digits": lambda n: "1" * n,
    "digits and dots": lambda n: repeat("1.", n),
    "minus signs": lambda n: "-" * n,
    "exponent letters": lambda n: "(1" + "e" * n,
    "number words": lambda n: repeat("seven ", n),
    "number-word prefixes": lambda n: repeat("sevente", n),
    "nan/inf pairs": lambda n: repeat("(nan,inf),", n),
    # brackets, commas, quotes: unclosed and deeply nested
    "open paren, digits": lambda n: "(" + "1" * n,
    "open paren, spaces": lambda n: "(" + " " * n,
    "half pairs": lambda n: repeat("(1,", n),
    "pair, spaces": lambda n: "(1 ," + " " * n,
    "open parens": lambda n: "(" * n,
    "close parens": lambda n: ")" * n,
    "commas": lambda n: "," * n,
    "open brackets": lambda n: "[" * n,
    "nested brackets": lambda n: "[" * (n // 2) + "]" * (n // 2),
    "open braces": lambda n: "{" * n,
    "nested braces": lambda n: "{" * (n // 2) + "}" * (n // 2),
    "nested JSON objects": lambda n: repeat('{"a":', n),
    "JSON list, no close": lambda n: '[{"bbox_2d": [' + repeat("1, ", n),
    "JSON string, no close": lambda n: '[{"label": "' + "a" * n,
    "double quotes": lambda n: '"' * n,
    "single-quoted chunks (salvaged)": lambda n: repeat("{'bbox_2d': [1,2,3,4], 'label': 'a',},", n),
    "label key, spaces": lambda n: '{"label"' + " " * n + "}",
    "bbox key runs in one chunk": lambda n: "{" + repeat('"bbox_2d":[' + "x" * 380, n) + "}",
    # many objects (past MAX_OBJECTS: counted, not kept)
    "JSON objects": lambda n: "[" + repeat('{"bbox_2d": [1, 2, 3, 4], "label": "a"}, ', n) + "{}]",
    "box tokens, full": lambda n: repeat(f"{B}(1,2),(3,4){BE}", n),
    "refs and boxes": lambda n: repeat(f"{R}dog{RE}{B}(1,2),(3,4){BE}", n),
    "bare boxes": lambda n: repeat("(1,2),(3,4)", n),
    "points": lambda n: repeat("(1,2),", n),
    "token-stripped boxes": lambda n: repeat("cross(85,156),(241,312)", n),
    # special tokens: unclosed, bounded runs, stop tokens
    "box starts": lambda n: repeat(B, n),
    "box token, no close": lambda n: B + "a" * n,
    "box token, paren, spaces": lambda n: B + "(" + " " * n,
    "box tokens, 990 chars each, no close": lambda n: repeat(B + "(" + " " * 990, n),
    "ref starts": lambda n: repeat(R, n),
    "ref, no close": lambda n: R + "a" * n,
    "refs, 990 chars each, no close": lambda n: repeat(R + "a" * 990, n),
    "token prefixes": lambda n: repeat("<|", n),
    "stop tokens": lambda n: repeat("<|im_end|>", n),
    "stop tokens, then text": lambda n: repeat("<|im_end|> ", n) + "x",
    # reasoning tags (reasoning="think": perception_env.reasoning scans them with str.find)
    "think opens": lambda n: repeat("<think>", n),
    "think closes": lambda n: repeat("</think>", n),
    "think opens, then closes": lambda n: "<think>" * (n // 16) + "</think>" * (n // 16),
    "think closes, spaces each, no answer": lambda n: (
        "<think>" + repeat("</think>" + " " * 24, n) + "</answer>"
    ),
    "think closes, answer prefixes": lambda n: "<think>" + repeat("</think> <answe", n) + "</answer>",
    "huge think block": lambda n: "<think>" + "a" * n + "</think><answer>7</answer>",
    "huge think block, no close": lambda n: "<think>" + "a " * (n // 2),
    "think, close, spaces, no answer": lambda n: "<think></think>" + " " * n + "</answer>",
    "answer opens, no close": lambda n: "<think></think>" + repeat("<answer>", n),
    "answer open, long, no close": lambda n: "<think></think><answer>" + "a" * n,
    "nested answer and think tags": lambda n: repeat("<answer><think>", n) + repeat("</think></answer>", n),
    "think/answer pairs": lambda n: repeat("<think>x</think><answer>7</answer>", n),
    # R1-V's format regex (a lazy .*? per tag) is quadratic here: each <answer> scans on for a close
    "think, close-and-answer pairs, no answer close": lambda n: (
        "<think>" + repeat("</think><answer>", n) + "."
    ),
    "tag prefixes": lambda n: repeat("<thin</answe<answ</thi", n),
}
