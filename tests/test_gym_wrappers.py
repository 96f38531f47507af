"""The envs inside Gymnasium's own machinery: pickled and copied (spawned vector envs, Ray and verl workers),
recorded on video (``RecordVideo``, ``RenderCollection``), and their specs written as JSON (Minari)."""

from __future__ import annotations

import copy
import functools
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import RecordVideo, RenderCollection
from PIL import Image

import perception_env
import perception_env.vector
from perception_env.render import PADDING

from .data.fixtures import (
    write_coco,
    write_jsonl,
    write_page_ocr_pages,
    write_pixmo_count_export,
    write_png,
    write_refer,
)

REGISTERED = sorted(perception_env.ENV_IDS)  # every task registered when the tests are collected
BUILT_IN = [
    "PerceptionR1/Counting-v0",
    "PerceptionR1/Detection-v0",
    "PerceptionR1/Grounding-v0",
    "PerceptionR1/OCR-v0",
]
WRONG_ANSWERS = ["", "nonsense", "1\n2\n3 (0,0),(999,999) [[1, 2, 3, 4]]"]


def assert_same_observation(a: dict, b: dict) -> None:
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["prompt"] == b["prompt"]


def assert_plays_the_same(env: gym.Env, other: gym.Env, episodes: int = 3) -> None:
    """Both envs draw the same samples from where they are (no seed given) and score answers alike."""
    for episode in range(episodes):
        (obs, info), (other_obs, other_info) = env.reset(), other.reset()
        assert_same_observation(obs, other_obs)
        assert info == other_info
        answer = env.unwrapped.oracle_answer() if episode % 2 == 0 else WRONG_ANSWERS[episode % 3]
        step, other_step = env.step(answer), other.step(answer)
        assert_same_observation(step[0], other_step[0])
        assert step[1:4] == other_step[1:4]  # reward, terminated, truncated
        assert step[4] == other_step[4]  # the whole info: parse, matching, target
        assert step[4]["is_success"] or episode % 2  # the oracle passes (a wrong answer can: "" is no object)
        if env.render_mode is not None:
            np.testing.assert_array_equal(env.render(), other.render())


# ------------------------------------------------------------------------------------------------ pickle


@pytest.mark.parametrize("env_id", REGISTERED)
def test_every_registered_env_pickles_to_one_that_plays_the_same(env_id):
    """Before: PicklingError on the synthetic datasets' per-instance lru_cache."""
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=11)
    env.step(env.unwrapped.oracle_answer())
    clone = pickle.loads(pickle.dumps(env))
    assert type(clone.unwrapped) is type(env.unwrapped) and clone.spec == env.spec
    with pytest.raises(gym.error.ResetNeeded):  # mid-state kept: the episode had ended
        clone.step("1")
    assert_plays_the_same(env, clone)


def test_a_deep_copy_has_a_cache_of_its_own():
    """Before: the copy's samples came from the original's cache (``copy.dataset[i] is env.dataset[i]``)."""
    env = gym.make("PerceptionR1/Counting-v0", data_kwargs={"cache_size": 7})
    env.reset(seed=5, options={"index": 3})  # seeded: without a seed, each env would draw its own
    twin = copy.deepcopy(env)
    original, copied = env.unwrapped.dataset, twin.unwrapped.dataset
    assert original[3] is original[3]  # cached
    assert copied[3] is not original[3] and copied[3].sample_id == original[3].sample_id
    np.testing.assert_array_equal(copied[3].image, original[3].image)
    assert copied.cache_size == 7 and pickle.loads(pickle.dumps(original)).cache_size == 7
    assert_plays_the_same(env, twin)


def real_data_envs(tmp_path) -> dict[str, gym.Env]:
    """An env on each real source the tests write (COCO, RefCOCO, PixMo-Count, PageOCR, JSONL), images of
    several sizes."""
    annotations, images = write_coco(tmp_path / "coco")
    write_refer(tmp_path / "refer")
    write_pixmo_count_export(tmp_path / "pixmo")
    write_page_ocr_pages(tmp_path / "pages")
    for name, (width, height) in {"wide.png": (80, 20), "tall.png": (30, 90)}.items():
        write_png(tmp_path / "own" / name, width, height)
    own = write_jsonl(
        tmp_path / "own" / "ocr.jsonl",
        [{"image": "wide.png", "text": "wide"}, {"image": "tall.png", "text": "tall\npage"}],
    )
    made = {
        "coco": ("PerceptionR1/Detection-v0", {"annotation_file": annotations, "image_dir": images}, "train"),
        "refcoco": ("PerceptionR1/Grounding-v0", {"root": tmp_path / "refer"}, "val"),
        "pixmo-count": ("PerceptionR1/Counting-v0", {"root": tmp_path / "pixmo"}, "train"),
        "page-ocr": ("PerceptionR1/OCR-v0", {"root": tmp_path / "pages"}, "train"),
        "jsonl": ("PerceptionR1/OCR-v0", {"path": own}, "train"),
    }
    return {
        source: gym.make(env_id, source=source, split=split, data_kwargs=kwargs, render_mode="rgb_array")
        for source, (env_id, kwargs, split) in made.items()
    }


def test_envs_on_real_data_pickle_too(tmp_path):
    for source, env in real_data_envs(tmp_path).items():
        env.reset(seed=2)
        clone = pickle.loads(pickle.dumps(env))
        assert type(clone.unwrapped.dataset) is type(env.unwrapped.dataset), source
        assert_plays_the_same(env, clone, episodes=2)


def test_an_env_on_a_hugging_face_dataset_pickles(tmp_path):
    """source="hf": the rows held in memory (an Arrow table) travel with the env."""
    datasets = pytest.importorskip("datasets", reason="source='hf' needs the hf extra")
    rows = {
        "image": [Image.new("RGB", (32, 32), (0, 0, 200)), Image.new("RGB", (50, 20), (0, 200, 0))],
        "transcript": ["hello", "two words"],
    }
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "train.parquet"))
    data = {"path": str(tmp_path / "train.parquet"), "columns": {"text": "transcript"}}
    env = gym.make("PerceptionR1/OCR-v0", source="hf", data_kwargs=data, render_mode="rgb_array")
    env.reset(seed=3)
    assert_plays_the_same(env, pickle.loads(pickle.dumps(env)), episodes=2)


def test_a_spawned_async_vector_env_steps_every_registered_env():
    """Each registered env pickled into a process started by "spawn" (as Ray, verl and Python 3.14's default,
    "forkserver", ship envs): the same samples and rewards as the env here."""
    envs = [gym.make(env_id, difficulty="easy") for env_id in REGISTERED]
    vector = gym.vector.AsyncVectorEnv(
        [functools.partial(pickle.loads, pickle.dumps(env)) for env in envs],
        context="spawn",
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    try:
        observations, info = vector.reset(seed=0)
        answers = []
        for n, (env, index) in enumerate(zip(envs, info["index"])):
            env.reset(options={"index": int(index)})
            np.testing.assert_array_equal(
                observations["image"][n], env.unwrapped._fresh_observation()["image"]
            )
            answers.append(env.unwrapped.oracle_answer() if n % 2 == 0 else "nonsense")
        _, rewards, terminated, _, info = vector.step(tuple(answers))
        assert terminated.all() and info["final_info"]["answer"].tolist() == answers
        expected = [env.unwrapped.score(answer).reward for env, answer in zip(envs, answers)]
        assert rewards.tolist() == expected and rewards[0] > 0.9  # the oracle's answer scores
    finally:
        vector.close()


def test_the_vector_entry_point_spawns_its_workers():
    """``gym.make_vec(id, n, asynchronous=True, context="spawn")``: before, a worker built its env with a lambda,
    which a spawned process receives by value, without this package imported (no PerceptionR1 ids there)."""
    vector = gym.make_vec(
        "PerceptionR1/Counting-v0", 2, asynchronous=True, context="spawn", difficulty="easy"
    )
    local = gym.make("PerceptionR1/Counting-v0", difficulty="easy").unwrapped
    try:
        _, info = vector.reset(seed=3)
        _, rewards, terminated, _, info = vector.step(("2", "3"))
        assert terminated.all()
        indices = info["final_info"]["index"]
        assert rewards.tolist() == [local.score(a, index=int(i)).reward for a, i in zip(("2", "3"), indices)]
    finally:
        vector.close()
    with pytest.raises(ValueError, match="needs asynchronous=True"):
        gym.make_vec("PerceptionR1/Counting-v0", 2, context="spawn")


# ------------------------------------------------------------------------------------------------ render

# (height, width) of every frame, by hand: the medium images (224 px squares, a 448 x 112 page) upscaled to
# a 448-px side, and under them a band of 6 + 18 px per line: 4 lines (query, answer, reward, why), OCR 16
# (and 6 lines of the text read, 6 of the truth)
PANELS = {  # (width, height) of the image in them
    "PerceptionR1/Counting-v0": (448, 448),
    "PerceptionR1/Detection-v0": (448, 448),
    "PerceptionR1/Grounding-v0": (448, 448),
    "PerceptionR1/OCR-v0": (448, 112),
}
FRAME_SHAPES = {
    "PerceptionR1/Counting-v0": (448 + 6 + 18 * 4, 448),
    "PerceptionR1/Detection-v0": (448 + 6 + 18 * 4, 448),
    "PerceptionR1/Grounding-v0": (448 + 6 + 18 * 4, 448),
    "PerceptionR1/OCR-v0": (112 + 6 + 18 * 16, 448),
}


def play(env: gym.Env, episodes: int) -> None:
    for episode in range(episodes):
        env.reset(seed=episode)
        env.step(env.unwrapped.oracle_answer() if episode % 2 == 0 else WRONG_ANSWERS[episode % 3])


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_every_frame_of_an_env_has_one_size(env_id, tmp_path):
    """Before: 448 x 448 after reset, 490 x 448 after a step, other heights for other samples; the frames
    RenderCollection gathers over a run stack into one array and write one animation."""
    env = RenderCollection(gym.make(env_id, render_mode="rgb_array"), reset_clean=False)
    play(env, episodes=5)
    frames = env.render()
    assert len(frames) == 10  # a frame after each reset and each step
    assert np.stack(frames).shape == (10, *FRAME_SHAPES[env_id], 3)
    assert env.unwrapped.render_panel == PANELS[env_id]
    assert not np.array_equal(frames[0], frames[1])  # the answer is drawn
    path = tmp_path / "run.gif"
    first, *rest = (Image.fromarray(frame) for frame in frames)
    first.save(path, save_all=True, append_images=rest, duration=1000)
    with Image.open(path) as animation:
        assert animation.n_frames == 10 and animation.size == FRAME_SHAPES[env_id][::-1]


@pytest.mark.parametrize("env_id", REGISTERED)
def test_every_registered_env_renders_frames_of_one_size(env_id):
    env = RenderCollection(gym.make(env_id, render_mode="rgb_array"), reset_clean=False)
    play(env, episodes=4)
    assert len({frame.shape for frame in env.render()}) == 1


def test_real_images_of_several_sizes_are_fitted_into_one_panel(tmp_path):
    """80 x 20 and 30 x 90 images, fitted into 640 x 640: scaled 8 (640 x 160, 240 px of grey above and below)
    and 64/9 (213 x 640, 213 px of grey left and right)."""
    env = real_data_envs(tmp_path)["jsonl"]
    assert env.unwrapped.render_panel == (640, 640)
    frames = []
    for index in (0, 1):
        env.reset(options={"index": index})
        frames.append(env.render())
        env.step("wide")
        frames.append(env.render())
    assert {frame.shape for frame in frames} == {(640 + 6 + 18 * 16, 640, 3)}
    wide, tall = frames[0], frames[2]
    colour = (200, 100, 50)  # write_png's
    assert (wide[:240, :640] == PADDING).all() and (wide[400:640] == PADDING).all()
    assert (wide[240:400, :640] == colour).all()
    assert (tall[:640, :213] == PADDING).all() and (tall[:640, 213 + 213 :] == PADDING).all()
    assert (tall[:640, 213 : 213 + 213] == colour).all()


def test_a_fixed_image_size_gives_a_panel_of_even_sides():
    """``image_size=(101, 57)``, upscaled by 448/101: 448 x 252.8 -> 253 -> 254 (H.264 needs even sides)."""
    env = gym.make("PerceptionR1/Counting-v0", image_size=(101, 57), render_mode="rgb_array")
    assert env.unwrapped.render_panel == (448, 254)
    env.reset(seed=0)
    before = env.render()
    env.step("4")
    assert before.shape == env.render().shape == (254 + 6 + 18 * 4, 448, 3)


def test_record_video_records_an_episode_and_a_run(tmp_path):
    """Gymnasium's RecordVideo (needs moviepy): one video per episode, and one over several episodes (a run).
    Before: moviepy's "ImageSequenceClip requires all images to be the same size"."""
    pytest.importorskip("moviepy", reason="RecordVideo writes videos with moviepy, not installed")
    from moviepy import VideoFileClip

    env = gym.make("PerceptionR1/Detection-v0", render_mode="rgb_array")
    per_episode = RecordVideo(env, str(tmp_path / "episodes"), episode_trigger=lambda episode: True)
    play(per_episode, episodes=3)
    per_episode.close()
    run = RecordVideo(env, str(tmp_path / "run"), step_trigger=lambda step: step == 0, video_length=6)
    play(run, episodes=4)
    run.close()
    videos = {
        path.name: path
        for folder in ("episodes", "run")
        for path in sorted((tmp_path / folder).glob("*.mp4"))
    }
    assert sorted(videos) == [f"rl-video-episode-{e}.mp4" for e in range(3)] + ["rl-video-step-0.mp4"]
    for name, path in videos.items():
        with VideoFileClip(str(path)) as clip:
            frames = list(clip.iter_frames())
        # an episode: its reset and its step; the run: RecordVideo stops once it holds more than video_length
        assert len(frames) == (7 if "step" in name else 2)
        assert {frame.shape for frame in frames} == {(526, 448, 3)}


# ----------------------------------------------------------------------------------------------- to_json


@pytest.mark.parametrize("env_id", REGISTERED)
def test_every_env_spec_is_json_and_makes_the_same_env(env_id):
    """Before: ValueError, a functools.partial vector entry point cannot be written as JSON."""
    spec = gym.spec(env_id)
    written = spec.to_json()
    assert json.loads(written)["vector_entry_point"] == f"perception_env.vector:{env_id}"
    read = EnvSpec.from_json(written)
    assert read == spec
    (obs, info), (expected_obs, expected_info) = gym.make(read).reset(seed=4), gym.make(env_id).reset(seed=4)
    assert_same_observation(obs, expected_obs)
    assert info == expected_info
    vector = gym.make_vec(read, num_envs=2)  # through the vector entry point the JSON names
    try:
        assert vector.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP and vector.num_envs == 2
    finally:
        vector.close()


def test_a_made_envs_spec_keeps_its_options_through_json():
    """What Minari stores: ``env.spec`` with the options the env was made with."""
    env = gym.make("PerceptionR1/OCR-v0", difficulty="easy", answer_format="text")
    remade = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert remade.unwrapped.dataset.difficulty.name == "easy" and remade.spec.kwargs == env.spec.kwargs
    env.reset(seed=1)
    remade.reset(seed=1)
    assert_plays_the_same(env, remade, episodes=2)


def test_a_vector_entry_point_of_an_unknown_id_is_a_clear_error():
    with pytest.raises(AttributeError, match="import the module that registers it"):
        perception_env.vector.__getattr__("Elsewhere/Task-v0")
    with pytest.raises(ValueError, match="has no ':'"):
        perception_env.vector.vector_entry_point("module:Task-v0")
