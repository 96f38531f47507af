"""The Gymnasium contract, for every registered env."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import perception_env
from perception_env.spaces import ImageSpace, UnicodeText

# Parametrised from Gymnasium's registry itself, so a newly registered env cannot escape the checks.
ENV_IDS = sorted(env_id for env_id, spec in gym.registry.items() if spec.namespace == "PerceptionR1")
FORMATS = {
    "PerceptionR1/Detection-v0": ["qwen2.5-vl", "qwen2-vl"],
    "PerceptionR1/Counting-v0": ["qwen2-vl", "qwen2-vl-points", "qwen2.5-vl", "number"],
    "PerceptionR1/Grounding-v0": ["qwen2-vl", "qwen2.5-vl"],
    "PerceptionR1/OCR-v0": ["text"],
}


def test_registry_is_complete():
    assert set(ENV_IDS) == set(FORMATS) == set(perception_env.ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    env = gym.make(env_id, render_mode="rgb_array")  # and the render check
    check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_with_no_arguments_gives_a_valid_episode(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    assert isinstance(env.observation_space["image"], ImageSpace)
    assert isinstance(env.action_space, UnicodeText)
    assert obs["image"].dtype == np.uint8 and obs["image"].ndim == 3 and obs["image"].shape[2] == 3
    assert obs["prompt"] and isinstance(obs["prompt"], str)
    assert info["image_size"] == [obs["image"].shape[1], obs["image"].shape[0]]
    assert {"sample_id", "index", "answer_format", "frame"} <= set(info)
    obs2, reward, terminated, truncated, step_info = env.step("not an answer")
    assert terminated and not truncated
    assert np.isfinite(reward) and 0.0 <= reward <= step_info["max_reward"]
    assert step_info["reason"]  # says why an unreadable answer scored what it did


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeding_is_deterministic(env_id):
    a, b = gym.make(env_id), gym.make(env_id)
    for seed in (0, 1, 12345):
        (oa, ia), (ob, ib) = a.reset(seed=seed), b.reset(seed=seed)
        assert ia["sample_id"] == ib["sample_id"] and oa["prompt"] == ob["prompt"]
        np.testing.assert_array_equal(oa["image"], ob["image"])
        (oa, ia), (ob, ib) = a.reset(), b.reset()  # unseeded resets continue the seeded stream
        assert ia["sample_id"] == ib["sample_id"]
        np.testing.assert_array_equal(oa["image"], ob["image"])
        assert a.step("(1,2),(3,4)")[1] == b.step("(1,2),(3,4)")[1]
    # ... and the seed matters: ten seeds do not all give the same sample
    assert len({a.reset(seed=seed)[1]["sample_id"] for seed in range(10)}) > 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_index_option_replays_the_same_sample(env_id):
    env = gym.make(env_id)
    o1, i1 = env.reset(seed=0, options={"index": 7})
    env.reset(seed=99)
    o2, i2 = env.reset(options={"index": 7})
    assert i1["index"] == i2["index"] == 7 and i1["sample_id"] == i2["sample_id"]
    np.testing.assert_array_equal(o1["image"], o2["image"])
    assert o1["prompt"] == o2["prompt"]
    # replay in a fresh env, whatever its seed: the same sample, and the same answer earns the same reward
    other = gym.make(env_id)
    o3, i3 = other.reset(seed=1234, options={"index": 7})
    assert i3["sample_id"] == i1["sample_id"] and o3["prompt"] == o1["prompt"]
    np.testing.assert_array_equal(o3["image"], o1["image"])
    answer = env.unwrapped.oracle_answer()
    assert other.unwrapped.oracle_answer() == answer
    assert env.step(answer)[1] == other.step(answer)[1]
    with pytest.raises(IndexError):
        env.reset(options={"index": 10**9})


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_oracle_earns_the_maximum(env_id, difficulty):
    for answer_format in FORMATS[env_id]:
        env = gym.make(env_id, difficulty=difficulty, answer_format=answer_format)
        for seed in range(3):
            env.reset(seed=seed)
            _, reward, _, _, info = env.step(env.unwrapped.oracle_answer())
            # integer coordinates quantise boxes (a 14-px object at "hard" loses up to ~4% of IoU**2)
            assert reward >= 0.95 * info["max_reward"], (answer_format, info)
            assert info["is_success"], (answer_format, info)
            if env.unwrapped.answer_format.fractional_coordinates:  # unrounded: no quantisation loss
                exact = env.unwrapped.score(env.unwrapped.oracle_answer(exact=True)).reward
                assert exact == pytest.approx(info["max_reward"], rel=1e-4), answer_format


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_several_answers_to_one_observation(env_id):
    """A GRPO agent scores G answers to one observation with ``score``; a second ``step`` is an error, as
    Gymnasium has it (before: it re-scored, and RecordEpisodeStatistics counted episodes of r = 1, 2, 3)."""
    env = gym.make(env_id)
    env.reset(seed=5)
    oracle = env.unwrapped.oracle_answer()
    r_bad, r_good = (env.unwrapped.score(answer).reward for answer in ("", oracle))
    assert r_good > r_bad
    assert env.step(oracle)[1] == r_good
    with pytest.raises(gym.error.ResetNeeded, match=r"call reset\(\) before stepping again.*score\(answer\)"):
        env.step(oracle)
    env.reset(options={"index": env.unwrapped._index})  # the same sample: a new episode
    assert env.step(oracle)[1] == r_good


def test_step_before_reset_raises():
    env = perception_env.DetectionEnv()
    with pytest.raises(gym.error.ResetNeeded):
        env.step("[]")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec(env_id):
    envs = gym.make_vec(env_id, num_envs=4)
    obs, infos = envs.reset(seed=0)
    assert len(obs["image"]) == 4 and len(obs["prompt"]) == 4
    _, rewards, terminated, truncated, _ = envs.step(tuple("" for _ in range(4)))
    assert rewards.shape == (4,) and terminated.all() and not truncated.any()
    envs.close()


def test_fixed_image_size_resizes_image_and_targets():
    env = gym.make("PerceptionR1/Detection-v0", difficulty="easy", image_size=(224, 160))
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (160, 224, 3)
    assert env.observation_space["image"].shape == (160, 224, 3)
    _, reward, _, _, step_info = env.step(env.unwrapped.oracle_answer())
    assert reward >= 0.98 * step_info["max_reward"]
    check_env(env.unwrapped, skip_render_check=True)


def test_frames_are_explicit():
    det = gym.make("PerceptionR1/Detection-v0")
    _, info = det.reset(seed=0)
    assert info["frame"]["name"] == "resized-pixels"
    grd = gym.make("PerceptionR1/Grounding-v0")
    _, info = grd.reset(seed=0)
    assert info["frame"]["name"] == "relative-1000" and info["frame"]["answer_extent"] == [1000.0, 1000.0]
    ocr = gym.make("PerceptionR1/OCR-v0")
    assert ocr.reset(seed=0)[1]["frame"] is None


def test_custom_prompt_template():
    env = gym.make("PerceptionR1/Counting-v0", answer_format="number", prompt_template="Count the {object}!")
    obs, _ = env.reset(seed=0)
    assert obs["prompt"].startswith("Count the ") and obs["prompt"].endswith("!")


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="answers in one of"):
        gym.make("PerceptionR1/OCR-v0", answer_format="qwen2-vl")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_draws_targets_and_predictions(env_id):
    env = gym.make(env_id, difficulty="easy", render_mode="rgb_array")
    env.reset(seed=1)
    before = env.render()
    env.step(env.unwrapped.oracle_answer())
    after = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and min(before.shape[:2]) >= 112
    assert not np.array_equal(before, after)  # the answer is drawn


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_answer_ended_as_a_chat_model_ends_it(env_id):
    """Decoded with skip_special_tokens=False, an answer keeps its stop token(s): the same reward as without.

    Before: a trailing <|im_end|> zeroed a perfect qwen2-vl counting answer and dropped detection's format
    term.
    """
    for answer_format in FORMATS[env_id]:
        env = gym.make(env_id, difficulty="easy", answer_format=answer_format)
        env.reset(seed=0)
        oracle = env.unwrapped.oracle_answer()
        _, reward, _, _, info = env.step(oracle)
        for suffix in ("<|im_end|>", "<|endoftext|>", "<|im_end|>\n<|endoftext|><|endoftext|>"):
            stopped = env.unwrapped.score(oracle + suffix)
            assert stopped.reward == reward and stopped.info["parsed"]["well_formed"], (answer_format, suffix)
            assert stopped.info["is_success"] == info["is_success"]
            assert stopped.info["reason"] == info["reason"]
        scored = env.unwrapped.score(oracle + "<|im_end|>Hope this helps!")
        extra_info = scored.info
        assert not extra_info["parsed"]["well_formed"]
        assert "text after the stop token <|im_end|>" in extra_info["reason"], (answer_format, extra_info)


def test_qwen2_answer_decoded_without_its_tokens_scores_as_documented():
    """cross(85,156),(241,312) (skip_special_tokens=True): boxes and labels read, no format credit."""
    env = gym.make("PerceptionR1/Detection-v0", difficulty="easy", answer_format="qwen2-vl")
    env.reset(seed=0)
    oracle = env.unwrapped.oracle_answer()
    stripped = oracle
    for token in ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"):
        stripped = stripped.replace(token, "")
    _, full, _, _, info = env.step(oracle)
    scored = env.unwrapped.score(stripped)
    reward, stripped_info = scored.reward, scored.info
    assert stripped_info["reward_components"]["format"] == 0.0
    assert reward == pytest.approx(full - env.unwrapped.reward_config.format_weight)  # every other term kept
    assert stripped_info["reason"].startswith("box tokens missing")
    counting = gym.make("PerceptionR1/Counting-v0", difficulty="easy", answer_format="qwen2-vl")
    counting.reset(seed=0)
    stripped = counting.unwrapped.oracle_answer().replace("<|box_start|>", "").replace("<|box_end|>", "")
    stripped = stripped.replace("<|object_ref_start|>", "").replace("<|object_ref_end|>", "")
    _, reward, _, _, info = counting.step(stripped)
    assert reward == 0.0 and "box tokens missing" in info["reason"]  # not well-formed: 0, the paper's rule


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_score_is_what_step_returns_without_moving_the_env(env_id):
    env = gym.make(env_id)
    env.action_space.seed(0)
    env.reset(options={"index": 3})
    answers = [env.unwrapped.oracle_answer(), "not an answer", env.action_space.sample()]
    elsewhere = env.unwrapped.score(answers[0], index=5)  # another sample; the env stays on sample 3
    assert elsewhere.info["index"] == 5 and elsewhere.sample.sample_id == env.unwrapped.dataset[5].sample_id
    assert env.unwrapped.sample.sample_id == env.unwrapped.dataset[3].sample_id
    for answer in answers:
        scored = env.unwrapped.score(answer)
        _, reward, _, _, info = env.step(answer)
        assert (scored.reward, scored.info) == (reward, info)
        env.reset(options={"index": 3})


def test_score_keeps_the_parse_at_full_precision():
    env = gym.make("PerceptionR1/Detection-v0", difficulty="easy")
    env.reset(options={"index": 0})
    frame = env.unwrapped.frame
    scored = env.unwrapped.score('[{"bbox_2d": [10.123456, 20, 30, 40], "label": "circle"}]')
    x1 = 10.123456 / frame.scale_x  # original pixels
    assert scored.result.parsed.boxes[0, 0] == pytest.approx(x1, abs=1e-12)
    assert scored.info["parsed"]["boxes"][0][0] == round(x1, 2)  # step's info, rounded to 0.01 px


def test_reward_config_is_read_one_way_for_every_task():
    from perception_env.rewards import CountingRewardConfig, DetectionRewardConfig

    env = gym.make("PerceptionR1/Counting-v0", reward_config={"kind": "ratio"})
    assert env.unwrapped.reward_config == CountingRewardConfig(kind="ratio")
    with pytest.raises(
        ValueError, match=r"reward_config: CountingRewardConfig has no option 'knd'; its options: kind"
    ):
        gym.make("PerceptionR1/Counting-v0", reward_config={"knd": "ratio"})
    # another task's options were taken as they were and scored with whatever their fields said
    with pytest.raises(
        TypeError, match="must be a CountingRewardConfig or a dict, got DetectionRewardConfig"
    ):
        gym.make("PerceptionR1/Counting-v0", reward_config=DetectionRewardConfig())
    with pytest.raises(ValueError, match="OCREnv has no reward options"):
        gym.make("PerceptionR1/OCR-v0", reward_config={"kind": "exact"})
