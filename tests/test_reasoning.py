"""``reasoning="think"``: R1's <think>...</think><answer>...</answer> asked for and scored, on every env and format,
and through TRL's and verl's reward functions (perception_env/reasoning.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import perception_env  # noqa: F401  (registers the envs)
from perception_env.evaluation.table import columns_for
from perception_env.evaluation.tasks import length_metrics
from perception_env.integrations import compute_score, trl_reward
from perception_env.integrations.ground_truth import ground_truth, score_ground_truth
from perception_env.reasoning import (
    follows_think_format,
    reading_order,
    scene_thinking,
    split_thinking,
    wrap_answer,
)
from tests.test_envs import FORMATS

CASES = [(env_id, fmt) for env_id, formats in sorted(FORMATS.items()) for fmt in formats]
# R1-V's think_format_reward, as its grpo.py writes it
R1V_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def make(env_id: str, answer_format: str | None = None, **kwargs):
    if answer_format is not None:
        kwargs["answer_format"] = answer_format
    return gym.make(env_id, difficulty="easy", **kwargs)


def pair(env_id: str, fmt: str, index: int = 0, **think_kwargs):
    """The same sample in a no-think env and a thinking env."""
    plain, thinking = make(env_id, fmt), make(env_id, fmt, reasoning="think", **think_kwargs)
    plain.reset(options={"index": index})
    thinking.reset(options={"index": index})
    return plain, thinking


def near_misses(plain) -> list[str]:
    """No-think answers whose rewards differ: perfect, cut in half, nonsense, empty."""
    oracle = plain.unwrapped.oracle_answer()
    return [oracle, oracle[: len(oracle) // 2], "no idea", ""]


# ----------------------------------------------------------------------------------------- the option
@pytest.mark.parametrize("bad", ["cot", "THINK", "", None, 1])
def test_reasoning_other_than_none_or_think_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"reasoning must be one of 'none', 'think'"):
        gym.make("PerceptionR1/Detection-v0", reasoning=bad)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "1", True, None])
def test_think_format_weight_must_be_a_finite_number_at_least_0(bad):
    with pytest.raises(ValueError, match="think_format_weight"):
        gym.make("PerceptionR1/Detection-v0", reasoning="think", think_format_weight=bad)


def test_default_is_no_thinking_and_its_prompt_is_unchanged():
    env = make("PerceptionR1/Counting-v0", "number")
    observation, _ = env.reset(options={"index": 0})
    assert env.unwrapped.reasoning == "none" and env.unwrapped.system_prompt is None
    assert observation["prompt"] == "How many circles are in the image? Answer with a number."


def test_think_prompt_is_r1v_wording_with_the_tasks_answer():
    """Counting's number answer gets R1-V's own words; the system prompt is R1-V's, offered, not sent."""
    env = make("PerceptionR1/Counting-v0", "number", reasoning="think")
    observation, _ = env.reset(options={"index": 0})
    assert observation["prompt"] == (
        "How many circles are in the image? Answer with a number. Output the thinking process in "
        "<think> </think> and final answer (number) in <answer> </answer> tags."
    )
    assert env.unwrapped.system_prompt.startswith("A conversation between User and Assistant.")
    assert env.unwrapped.system_prompt.endswith(
        "i.e., <think> reasoning process here </think><answer> answer here </answer>"
    )
    detection = make("PerceptionR1/Detection-v0", reasoning="think")
    assert detection.reset(options={"index": 0})[0]["prompt"].endswith(
        "final answer (bbox coordinates and names in JSON format) in <answer> </answer> tags."
    )


@pytest.mark.parametrize("env_id", sorted(FORMATS))
def test_check_env_passes_with_thinking(env_id):
    env = gym.make(env_id, reasoning="think")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_a_vector_env_batches_thinking_infos():
    """info["reasoning"] keeps one type per key whatever the answer, so a vector env batches it."""
    envs = gym.make_vec(
        "PerceptionR1/Counting-v0", num_envs=3, difficulty="easy", answer_format="number", reasoning="think"
    )
    envs.reset(seed=0)
    answers = ("<think>a b</think><answer>1</answer>", "<answer>2", "no tags")
    _, rewards, _, _, infos = envs.step(answers)
    stepped = infos["final_info"]["reasoning"]  # the step's infos (the envs reset in the same step)
    assert list(stepped["thinking_words"]) == [2, 0, 0]
    assert list(stepped["answer_found"]) == [True, False, False]
    assert list(stepped["answer_part"]) == ["1", "", ""]
    assert rewards[1] == rewards[2] == 0.0
    envs.close()


def test_a_prompt_template_of_ones_own_gets_the_instruction_too():
    env = make("PerceptionR1/OCR-v0", reasoning="think", prompt_template="Read the page.")
    assert env.reset(options={"index": 0})[0]["prompt"] == (
        "Read the page. Output the thinking process in <think> </think> and final answer (the text in the "
        "image) in <answer> </answer> tags."
    )


# ---------------------------------------------------------------------------- Detection, by hand
def test_detection_oracle_is_the_no_think_oracles_task_reward_plus_the_format_term():
    plain, thinking = pair("PerceptionR1/Detection-v0", "qwen2.5-vl")
    _, plain_reward, _, _, plain_info = plain.step(plain.unwrapped.oracle_answer())
    answer = thinking.unwrapped.oracle_answer()
    assert answer == "<think></think><answer>" + plain.unwrapped.oracle_answer() + "</answer>"
    _, reward, terminated, _, info = thinking.step(answer)
    assert plain_reward == 3.0 and reward == 3.0 + 1.0 and terminated
    assert info["max_reward"] == plain_info["max_reward"] + 1.0 == 4.0
    assert info["reward_components"]["task_reward"] == plain_reward
    assert info["reward_components"]["think_format"] == 1.0
    assert info["is_success"] and info["reason"] is None
    assert info["reasoning"]["answer_part"] == plain.unwrapped.oracle_answer()
    assert info["reasoning"]["thinking_chars"] == 0 and info["reasoning"]["tags_ok"]


def test_format_weight_is_configurable():
    plain, thinking = pair("PerceptionR1/Detection-v0", "qwen2.5-vl", think_format_weight=0.25)
    assert thinking.step(thinking.unwrapped.oracle_answer())[1] == 3.0 + 0.25
    _, zero = pair("PerceptionR1/Detection-v0", "qwen2.5-vl", think_format_weight=0)
    assert zero.step(zero.unwrapped.oracle_answer())[1] == 3.0


def test_a_thinking_answer_with_a_wrong_box_scores_as_the_wrong_box():
    plain, thinking = pair("PerceptionR1/Detection-v0", "qwen2.5-vl")
    u = plain.unwrapped
    sample = u.sample
    wrong = u.answer_format.write(
        boxes=np.asarray(sample.boxes) + 15.0, labels=list(sample.labels), frame=u.frame
    )
    _, plain_reward, _, _, plain_info = plain.step(wrong)
    answer = "<think>The circle is at the top left.</think>\n<answer>" + wrong + "</answer>"
    _, reward, _, _, info = thinking.step(answer)
    assert plain_reward < 3.0  # the box is off: less IoU
    assert reward == pytest.approx(plain_reward + 1.0)
    assert info["reward_components"]["iou"] == plain_info["reward_components"]["iou"] < 1.0
    assert info["parsed"]["boxes"] == plain_info["parsed"]["boxes"]
    assert info["is_success"] == plain_info["is_success"]
    assert info["reasoning"]["thinking_chars"] == len("The circle is at the top left.")
    assert info["reasoning"]["thinking_words"] == 7


def test_missing_answer_close_is_a_reason_not_an_exception():
    _, thinking = pair("PerceptionR1/Detection-v0", "qwen2.5-vl")
    oracle = thinking.unwrapped.oracle_answer()
    _, reward, terminated, _, info = thinking.step(oracle[: -len("</answer>")])
    assert reward == 0.0 and terminated and not info["is_success"]
    assert "<answer> tag is never closed by </answer>" in info["reason"]
    assert info["reasoning"]["answer_found"] is False and info["reasoning"]["answer_part"] == ""
    assert info["max_reward"] == 4.0


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("[]", "no <answer> tag"),  # the bare no-think answer
        ("<think>I see nothing", "no <answer> tag"),
        ("<think>a</think>", "no <answer> tag"),
        ("<think></think><answer>[]", "never closed"),
    ],
)
def test_answers_without_the_answer_tags_get_0_and_say_why(answer, reason):
    """0 even where the task would pay an empty answer (no objects, and none predicted)."""
    env = make("PerceptionR1/Detection-v0", reasoning="think")
    env.reset(options={"index": 0})
    info = env.unwrapped.score(answer).info
    assert info["reward"] == 0.0 and reason in info["reason"] and not info["is_success"]


def test_answer_tags_without_a_think_block_earn_the_task_reward_only():
    plain, thinking = pair("PerceptionR1/Counting-v0", "number")
    count = plain.unwrapped.oracle_answer()
    info = thinking.unwrapped.score(f"<answer> {count} </answer>").info
    assert info["reward"] == plain.unwrapped.score(count).reward == 1.0
    assert info["reward_components"]["think_format"] == 0.0
    assert "no think-format term" in info["reason"]
    assert info["reasoning"]["answer_part"] == count  # white space around it stripped


def test_stop_tokens_after_the_answer_are_removed_as_every_format_does():
    _, thinking = pair("PerceptionR1/Counting-v0", "number")
    answer = thinking.unwrapped.oracle_answer() + "\n<|im_end|><|endoftext|>"
    assert thinking.unwrapped.score(answer).reward == 2.0


def test_an_answer_tag_inside_the_thinking_does_not_count():
    """The answer part is the first <answer>...</answer> after the think block (R1-V's regex would read the
    one the reasoning mentions)."""
    _, thinking = pair("PerceptionR1/Counting-v0", "number")
    count = thinking.unwrapped.sample.count or len(thinking.unwrapped.sample.points)
    answer = f"<think>I put it in <answer>0</answer> tags</think><answer>{count}</answer>"
    info = thinking.unwrapped.score(answer).info
    assert info["reasoning"]["answer_part"] == str(count) and info["reward"] == 2.0


# ------------------------------------------------------------------------------- every task x format
@pytest.mark.parametrize("env_id, fmt", CASES)
def test_every_task_and_format_scores_the_answer_part_as_the_task_does(env_id, fmt):
    plain, thinking = pair(env_id, fmt, index=1)
    assert thinking.unwrapped.oracle_answer() == wrap_answer(plain.unwrapped.oracle_answer())
    exact = thinking.unwrapped.oracle_answer(exact=True)
    assert exact == wrap_answer(plain.unwrapped.oracle_answer(exact=True))
    for answer in near_misses(plain):
        expected = plain.unwrapped.score(answer)
        got = thinking.unwrapped.score(wrap_answer(answer, thinking="Let me look."))
        assert got.reward == pytest.approx(expected.reward + 1.0), (answer, got.info["reason"])
        assert got.info["reward_components"]["task_reward"] == expected.reward
        assert got.info["is_success"] == expected.info["is_success"]
        assert got.info["max_reward"] == expected.info["max_reward"] + 1.0
        assert got.info["parsed"] == expected.info["parsed"]
    assert thinking.unwrapped.score(exact).info["is_success"]


# --------------------------------------------------------------------------------------- TRL, verl
def thinking_answers(env) -> list[str]:
    oracle = env.unwrapped.oracle_answer()
    return [oracle, oracle[: len(oracle) // 2], oracle.replace("<think></think>", "<think>hm</think> "), "x"]


@pytest.mark.filterwarnings(
    "ignore:trl_reward"
)  # text given, no token ids: these answers hold no tokens to lose
@pytest.mark.parametrize("env_id, fmt", CASES)
def test_trl_and_verl_score_thinking_answers_as_env_step(env_id, fmt):
    kwargs = {"difficulty": "easy", "answer_format": fmt, "reasoning": "think"}
    reward_fn = trl_reward(env_id, **kwargs)
    env = gym.make(env_id, **kwargs)
    for index in (0, 2):
        _, info = env.reset(options={"index": index})
        truth = ground_truth(env.unwrapped, env.unwrapped.sample)
        assert json.loads(truth)["reasoning"] == "think"
        answers = thinking_answers(env)
        trl = reward_fn(
            prompts=[None] * len(answers),
            completions=answers,
            sample_index=[index] * len(answers),
            sample_id=[info["sample_id"]] * len(answers),
        )
        for answer, trl_value in zip(answers, trl):
            env.reset(options={"index": index})
            stepped = env.step(answer)[1]
            assert trl_value == stepped == compute_score(env_id, answer, truth), (env_id, fmt, answer)


def test_a_ground_truth_without_reasoning_scores_without_thinking():
    """Ground truths written before the option carry no "reasoning": they score answers as then."""
    env = make("PerceptionR1/Counting-v0", "number", reasoning="think")
    env.reset(options={"index": 0})
    record = json.loads(ground_truth(env.unwrapped, env.unwrapped.sample))
    count = env.unwrapped.sample.count or len(env.unwrapped.sample.points)
    del record["reasoning"], record["think_format_weight"]
    assert score_ground_truth(str(count), record).reward == 1.0
    record["reasoning"] = ["think"]
    with pytest.raises(ValueError, match="reasoning must be one of"):
        score_ground_truth(str(count), record)


# ---------------------------------------------------------------------------------- any string
TAG_PIECES = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "3", "[", "]", "x", "<|im_end|>"]
tagged_text = st.lists(st.sampled_from(TAG_PIECES), max_size=12).map("".join)
THINKING_ENVS = {
    (env_id, fmt): make(env_id, fmt, reasoning="think") for env_id, fmt in CASES if fmt != "qwen2-vl-points"
}
for _env in THINKING_ENVS.values():
    _env.reset(options={"index": 0})


@settings(max_examples=150, deadline=None)
@given(st.one_of(tagged_text, st.text(max_size=60)), st.sampled_from(sorted(THINKING_ENVS)))
def test_any_string_gets_a_bounded_reward_with_thinking(answer, case):
    info = THINKING_ENVS[case].unwrapped.score(answer).info
    assert np.isfinite(info["reward"]) and 0.0 <= info["reward"] <= info["max_reward"]
    assert info["reasoning"]["tags_ok"] == (R1V_FORMAT_RE.fullmatch(split_text(answer)) is not None)


def split_text(answer: str) -> str:
    from perception_env.formats import strip_stop_tokens

    return strip_stop_tokens(answer).strip()


@settings(max_examples=400, deadline=None)
@given(tagged_text)
def test_format_rule_is_r1vs_regex(text):
    assert follows_think_format(text) == (R1V_FORMAT_RE.fullmatch(text) is not None)


def test_split_thinking_by_hand():
    split = split_thinking("<think> two words </think>\n<answer> 3 </answer><|im_end|>")
    assert (split.thinking, split.answer, split.tags_ok, split.problem) == (" two words ", "3", True, None)
    assert split.lengths() == {
        "thinking_chars": 11,
        "thinking_words": 2,
        "answer_chars": 1,
        "answer_words": 1,
    }
    unclosed = split_thinking("<think>hmm <answer>4</answer>")  # the thinking runs to the answer
    assert (unclosed.thinking, unclosed.answer, unclosed.tags_ok) == ("hmm ", "4", False)
    assert split_thinking(" <think></think><answer>4</answer>\n").tags_ok  # white space at the ends: ignored
    assert split_thinking("so <think></think><answer>4</answer>").tags_ok is False  # R1-V: from the start
    assert split_thinking("<think></think><answer>4</answer>.").tags_ok is False  # ... to the end


# ------------------------------------------------------------------------------------- evaluation
def test_length_metrics_by_hand():
    infos = [
        {
            "reasoning": {
                "thinking_chars": 10,
                "thinking_words": 2,
                "answer_chars": 4,
                "answer_words": 1,
                "tags_ok": True,
            }
        },
        {
            "reasoning": {
                "thinking_chars": 0,
                "thinking_words": 0,
                "answer_chars": 2,
                "answer_words": 1,
                "tags_ok": False,
            }
        },
        {"reward": 1.0},  # an older record: not counted
    ]
    assert length_metrics(infos) == {
        "answer_chars": 3.0,
        "answer_words": 1.0,
        "thinking_chars": 5.0,
        "thinking_words": 1.0,
        "tags_ok": 0.5,
    }
    assert length_metrics([{"reward": 1.0}]) == {}


@pytest.mark.parametrize("reasoning", ["none", "think"])
def test_eval_cli_reports_mean_answer_and_thinking_lengths(reasoning, tmp_path):
    """``perception-r1 eval`` as a user runs it: metrics.json and the table carry the lengths."""
    out = tmp_path / "run"
    kwargs = json.dumps({"difficulty": "easy", "answer_format": "number", "reasoning": reasoning})
    command = [
        str(Path(sys.executable).with_name("perception-r1")),
        "eval",
        "--env",
        "PerceptionR1/Counting-v0",
    ]
    command += ["--agent", "oracle", "--limit", "5", "--output", str(out), "--quiet", "--env-kwargs", kwargs]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    answers = [json.loads(line)["answer"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    counts = [a.removeprefix("<think></think><answer>").removesuffix("</answer>") for a in answers]
    assert all(c.isdigit() for c in counts)
    assert metrics["answer_chars"] == pytest.approx(np.mean([len(c) for c in counts]))
    assert metrics["thinking_chars"] == 0.0 and metrics["answer_words"] == 1.0
    table = (out / "table.md").read_text()
    if reasoning == "think":
        assert "| answer chars | thinking chars | think tags ok |" in table
    else:  # no thinking, no thinking columns (their 0.00 would say nothing)
        assert "| answer chars |" in table and "thinking" not in table and "think tags" not in table
    assert metrics["reward"] == (2.0 if reasoning == "think" else 1.0)


# ----------------------------------------------------------------------- the oracle's think block
def test_reading_order_by_hand_keeps_a_jittered_grid_row_together():
    # centres (69.5, 13.5), (70, 70), (98, 42), (98, 14): a pixel of jitter between the two top-row
    # objects; by centre y alone (98, 14) would come after (42, ...) rows, in reading order it follows
    boxes = [[58, 2, 81, 25], [59, 59, 81, 81], [86, 30, 110, 54], [87, 3, 109, 25]]
    assert reading_order(boxes) == [0, 3, 2, 1]
    assert reading_order([[60, 0, 80, 20], [0, 1, 20, 21]]) == [1, 0]  # one row: left first
    assert reading_order([[0, 60, 20, 80], [60, 0, 80, 20]]) == [1, 0]  # two rows: top first
    assert reading_order(np.zeros((0, 4))) == []


def test_scene_thinking_names_objects_as_a_sentence():
    assert scene_thinking(["circle", "square", "circle"]) == "circle, square, circle."
    assert scene_thinking(["star"]) == "star."
    assert scene_thinking([]) == "no objects."


def test_scene_oracle_names_the_sample_s_objects_in_reading_order_and_scores_the_maximum():
    env = gym.make(
        "PerceptionR1/Counting-v0",
        difficulty={"base": "easy", "count_query": "all"},
        answer_format="number",
        reasoning="think",
        oracle_thinking="scene",
    )
    for index in range(20):
        env.reset(options={"index": index})
        sample = env.unwrapped.sample
        answer = env.unwrapped.oracle_answer()
        names = [sample.labels[i] for i in reading_order(sample.boxes)]
        assert answer == wrap_answer(str(len(names)), scene_thinking(names))
        _, reward, _, _, info = env.step(answer)
        assert reward == 2.0 and info["is_success"] and info["reasoning"]["tags_ok"]  # count 1 + format 1
    env.reset(options={"index": 0})  # by hand: circle, triangle, triangle, circle as listed
    assert env.unwrapped.oracle_answer() == (
        "<think>circle, circle, triangle, triangle.</think><answer>4</answer>"
    )
    env.reset(options={"index": 3})  # an empty image
    assert env.unwrapped.oracle_answer() == "<think>no objects.</think><answer>0</answer>"


def test_empty_oracle_stays_the_default_and_scene_needs_thinking_to_show():
    _, empty = pair("PerceptionR1/Counting-v0", "number")
    assert empty.unwrapped.oracle_answer().startswith("<think></think><answer>")
    plain = make("PerceptionR1/Counting-v0", "number", oracle_thinking="scene")  # reasoning "none"
    plain.reset(options={"index": 0})
    assert plain.unwrapped.oracle_answer().isdigit()


def test_ocr_scene_oracle_spells_the_page():
    env = make("PerceptionR1/OCR-v0", reasoning="think", oracle_thinking="scene")
    env.reset(options={"index": 0})
    text = env.unwrapped.sample.text
    expected = ", ".join("".join(text.split())) + "."
    assert env.unwrapped.oracle_answer() == f"<think>{expected}</think><answer>{text}</answer>"


@pytest.mark.parametrize("bad", ["scenes", "", None, 1])
def test_oracle_thinking_other_than_empty_or_scene_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"oracle_thinking must be one of 'empty', 'scene'"):
        gym.make("PerceptionR1/Counting-v0", oracle_thinking=bad)


def test_metrics_table_shows_thinking_columns_only_for_thinking_runs():
    plain = {"n": 2, "reward": 1.0, "success": 1.0, "answer_chars": 1.0, "thinking_chars": 0.0}
    thinking = {**plain, "thinking_chars": 12.5, "tags_ok": 1.0}
    keys = [c[0] for c in columns_for("counting", [plain])]
    assert "answer_chars" in keys and "thinking_chars" not in keys and "tags_ok" not in keys
    keys = [c[0] for c in columns_for("counting", [plain, thinking])]  # one thinking run: shown for both
    assert keys[-3:] == ["answer_chars", "thinking_chars", "tags_ok"]
