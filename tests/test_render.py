"""What a rendered answer shows: targets, predictions, and the answer as written."""

import gymnasium as gym
import numpy as np

import perception_env  # noqa: F401  (registers the envs)
from perception_env.render import render_sample


def test_the_render_of_an_answer_writes_the_answer():
    """A number or a transcription draws no box: before, the picture showed the targets and the reward only."""
    env = gym.make(
        "PerceptionR1/Counting-v0", difficulty="easy", answer_format="number", render_mode="rgb_array"
    )
    env.reset(options={"index": 0})
    scored = env.unwrapped.score("7")
    without = render_sample(env.unwrapped.sample, scored.result, points=True)
    with_answer = render_sample(env.unwrapped.sample, scored.result, points=True, answer="7")
    assert with_answer.shape[0] == without.shape[0] + 18  # one more line of text: the answer
    np.testing.assert_array_equal(with_answer[: without.shape[0] - 40], without[: without.shape[0] - 40])
    env.step("7")
    # the env's frame: the same drawing, in its panel (112 px upscaled 4x fills it) over a band of 4 lines
    panel = env.unwrapped.render_panel
    framed = render_sample(env.unwrapped.sample, scored.result, points=True, answer="7", panel=panel)
    assert panel == (448, 448) and framed.shape == (448 + 6 + 18 * 4, 448, 3)
    np.testing.assert_array_equal(framed[: without.shape[0]], with_answer[: without.shape[0]])
    np.testing.assert_array_equal(env.render(), framed)
    env.reset(options={"index": 0})
    no_answer = env.render()
    assert no_answer.shape == framed.shape  # one size for every frame: the answer's line left blank
    blank_line = no_answer[448 + 3 + 18 : 448 + 3 + 36]  # the second line of the band (the first: the query)
    assert (blank_line == 255).all() and not (framed[448 + 3 + 18 : 448 + 3 + 36] == 255).all()
