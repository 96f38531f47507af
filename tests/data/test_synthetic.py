import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import perception_env  # noqa: F401  (registers the env ids)
from perception_env.data import (
    EASY,
    PRESETS,
    Difficulty,
    RenderedTextOCR,
    ShapesCounting,
    ShapesDetection,
    ShapesGrounding,
    get_difficulty,
)
from perception_env.data.synthetic.shapes import RGB

ALL = (ShapesDetection, ShapesCounting, ShapesGrounding, RenderedTextOCR)
SPLITS = ("train", "val", "test")


def _same(a, b):
    return (
        a.image.tobytes() == b.image.tobytes()
        and np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.points, b.points)
        and (a.labels, a.query, a.text, a.count) == (b.labels, b.query, b.text, b.count)
    )


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_deterministic_and_access_order_free(cls, difficulty):
    a, b = cls(difficulty=difficulty, size=10), cls(difficulty=difficulty, size=10, cache_size=0)
    later = [b[i] for i in (7, 3, 0)]
    assert all(_same(a[i], s) for i, s in zip((7, 3, 0), later))
    assert not _same(a[0], cls(difficulty=difficulty, size=10, seed=1)[0])


@pytest.mark.parametrize("cls", ALL)
def test_splits_differ_and_never_share_content(cls):
    train, test = cls(split="train", size=300), cls(split="test", size=100)
    assert not _same(train[0], test[0])

    def sig(s):
        return s.text, s.query, s.boxes.tobytes(), str(s.meta.get("objects")), str(s.meta.get("origin"))

    assert not {sig(train[i]) for i in range(len(train))} & {sig(test[i]) for i in range(len(test))}


def _scenes(ds):
    return {ds.scene_key(i) for i in range(len(ds))}


def test_val_buckets_grow_validation_from_train_and_keep_test():
    """The detection demo's scene space (236 scenes): one bucket gave validation 22 of them, two give
    41; the test split is the same samples either way, and the three splits stay disjoint."""
    difficulty = {"base": "easy", "num_objects": [1, 1], "shapes": ["circle"]}
    splits = {
        vb: {split: ShapesDetection(split=split, difficulty=difficulty, val_buckets=vb) for split in SPLITS}
        for vb in (1, 2)
    }
    scenes = {vb: {split: _scenes(ds) for split, ds in by_split.items()} for vb, by_split in splits.items()}
    assert {split: len(keys) for split, keys in scenes[1].items()} == {"train": 157, "val": 22, "test": 57}
    assert {split: len(keys) for split, keys in scenes[2].items()} == {"train": 137, "val": 41, "test": 57}
    for by_split in scenes.values():
        assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"])
        assert not by_split["val"] & by_split["test"]
    # validation's new scenes are train's old ones (enough samples to see every scene of the split)
    whole = {
        vb: {
            split: _scenes(ShapesDetection(split=split, difficulty=difficulty, size=2000, val_buckets=vb))
            for split in ("train", "val")
        }
        for vb in (1, 2)
    }
    assert whole[1]["val"] < whole[2]["val"] and whole[2]["train"] < whole[1]["train"]
    assert whole[2]["val"] - whole[1]["val"] == whole[1]["train"] - whole[2]["train"]
    assert all(_same(splits[1]["test"][i], splits[2]["test"][i]) for i in range(0, 200, 7))
    # another scheme's train samples are other samples: their ids say so
    assert splits[2]["train"][0].sample_id.startswith("shapes-detection-easy+custom-val2/train/")
    assert splits[1]["train"][0].sample_id.startswith("shapes-detection-easy+custom/train/")


@pytest.mark.parametrize("bad", [0, 5, 1.5, True, "2"])
def test_val_buckets_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="val_buckets must be an int in 1..4"):
        ShapesDetection(split="val", val_buckets=bad)


def test_val_buckets_reach_the_env_through_data_kwargs():
    env = gym.make("PerceptionR1/Detection-v0", split="val", data_kwargs={"val_buckets": 2})
    assert env.unwrapped.dataset.val_buckets == 2 and env.unwrapped.dataset.buckets == {2, 3}


@pytest.mark.parametrize("cls", ALL)
def test_length_and_index_errors(cls):
    ds = cls(split="test")
    assert len(ds) == 200 and len(cls()) == 1000
    assert ds.name.endswith("-easy")
    for bad in (-1, 200):
        with pytest.raises(IndexError):
            ds[bad]
    with pytest.raises(ValueError, match="split"):
        cls(split="dev")


def test_images_are_read_only_uint8():
    s = ShapesDetection()[0]
    assert s.image.dtype == np.uint8 and s.image.shape == (112, 112, 3) and (s.width, s.height) == (112, 112)
    with pytest.raises(ValueError):
        s.image[0, 0, 0] = 1


@pytest.mark.parametrize("cls", (ShapesDetection, ShapesCounting, ShapesGrounding))
def test_easy_geometry_grid_one_object_per_cell(cls):
    ds = cls(difficulty="easy", size=200)
    for i in range(len(ds)):
        s = ds[i]
        objects = s.meta["objects"]
        assert 1 <= len(objects) <= 4
        cells = set()
        for o in objects:
            x1, y1, x2, y2 = o["box"]
            col, row = x1 // 28, y1 // 28
            # inside its 28-px cell, roughly filling it, centred
            assert col * 28 <= x1 < x2 <= (col + 1) * 28 and row * 28 <= y1 < y2 <= (row + 1) * 28
            assert 22 <= x2 - x1 <= 26 and x2 - x1 == y2 - y1
            assert abs((x1 + x2) / 2 - (col * 28 + 14)) <= 0.5
            cells.add((col, row))
            assert o["shape"] in EASY.shapes and o["color"] in EASY.colors
            # the box centre is painted in the object's colour (boxes match the drawing)
            assert tuple(s.image[int((y1 + y2) // 2), int((x1 + x2) // 2)]) == RGB[o["color"]]
        assert len(cells) == len(objects)
        assert np.all((s.boxes >= 0) & (s.boxes <= 112))


@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_detection_targets(difficulty):
    ds = ShapesDetection(difficulty=difficulty, size=20)
    d = get_difficulty(difficulty)
    assert ds.categories == d.shapes
    for i in range(len(ds)):
        s = ds[i]
        assert s.boxes.shape == (len(s.labels), 4) and set(s.labels) <= set(ds.categories)
        assert d.num_objects[0] <= len(s.labels) <= d.num_objects[1]
        assert np.all(s.boxes[:, :2] >= 0) and np.all(s.boxes[:, 2:] <= d.image_size)
        assert np.all(s.boxes[:, 2:] > s.boxes[:, :2])


@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_counting_points_are_centres_of_the_query_class(difficulty):
    ds = ShapesCounting(difficulty=difficulty, size=60)
    counts = []
    for i in range(len(ds)):
        s = ds[i]
        mine = [o["box"] for o in s.meta["objects"] if o["shape"] == s.query]
        centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in mine]).reshape(-1, 2)
        assert np.array_equal(s.points, centres) and np.array_equal(s.boxes, np.array(mine).reshape(-1, 4))
        assert s.count == len(s.points) and s.labels == (s.query,) * s.count
        assert s.query in ds.categories
        counts.append(s.count)
    lo, hi = get_difficulty(difficulty).count_range
    assert min(counts) >= lo and max(counts) <= hi


def test_counting_easy_is_balanced():
    counts = np.bincount([ShapesCounting(size=500)[i].count for i in range(500)], minlength=5)
    assert len(counts) == 5 and counts.min() >= 60  # uniform over 0..4 would give 100 each


@pytest.mark.parametrize("difficulty", sorted(PRESETS))
def test_ocr_text_rendered(difficulty):
    ds = RenderedTextOCR(difficulty=difficulty, size=10)
    d = get_difficulty(difficulty)
    for i in range(len(ds)):
        s = ds[i]
        assert s.text.strip() and s.image.shape == (d.page_size[1], d.page_size[0], 3)
        assert (s.image.min(axis=2) < 100).sum() > 20  # dark ink on a light page
        lines = s.text.split("\n")
        assert 1 <= len(lines) <= d.lines_per_page[1]
        assert all(line == line.strip() and "  " not in line for line in lines)


def test_ocr_easy_is_one_short_word():
    ds = RenderedTextOCR(size=50)
    assert all(" " not in ds[i].text and "\n" not in ds[i].text and len(ds[i].text) <= 4 for i in range(50))


def test_ocr_letter_cells_put_one_character_in_each_cell():
    """letter_cell 28: each character of the word sits inside its own 28x28 cell, in order, the word
    starting at a cell boundary; empty cells are blank."""
    d = {"base": "easy", "letter_cell": 28}
    ds = RenderedTextOCR(difficulty=d, size=40)
    for i in range(len(ds)):
        s = ds[i]
        x0, y0 = s.meta["origin"]
        assert x0 % 28 == 0 and y0 % 28 == 0
        ink = s.image.min(axis=2) < 128  # [56, 112]
        columns = {(x0 + 28 * j) // 28 for j in range(len(s.text))}
        for row in range(2):
            for column in range(4):
                cell = ink[28 * row : 28 * row + 28, 28 * column : 28 * column + 28]
                inked = row == y0 // 28 and column in columns
                assert cell.any() == inked, (s.text, s.meta, row, column)
                if inked:  # the glyph is centred: no ink on the cell's left and right edges
                    assert not (cell[:, 0].any() or cell[:, -1].any())
    assert len({ds[i].meta["origin"][0] for i in range(len(ds))}) > 1  # the word moves


def test_ocr_letter_cells_must_hold_the_font_and_fit_the_page():
    with pytest.raises(ValueError, match="letter_cell"):
        Difficulty(letter_cell=20)  # the 24-px font
    with pytest.raises(ValueError, match="letter_cell"):
        Difficulty(letter_cell=60, font_size=(24, 24))  # taller than the 56-px page


def test_difficulty_by_name_or_instance():
    custom = dataclasses.replace(EASY, name="custom", num_objects=(2, 2))
    assert get_difficulty(custom) is custom and get_difficulty("hard").image_size == 448
    assert all(len(ShapesDetection(difficulty=custom, size=5)[i].labels) == 2 for i in range(5))
    with pytest.raises(ValueError, match="unknown difficulty"):
        get_difficulty("extreme")
    with pytest.raises(ValueError, match="grid cells"):
        Difficulty(object_size=(10, 40))
    with pytest.raises(ValueError, match="range"):
        Difficulty(num_objects=(3, 1))


def test_difficulty_from_a_json_mapping():
    """The form --env-kwargs and checkpoints carry: overrides on a preset, lists as tuples."""
    d = get_difficulty({"base": "medium", "shapes": ["circle", "star"], "count_range": [1, 3]})
    assert (d.image_size, d.shapes, d.count_range, d.name) == (
        224,
        ("circle", "star"),
        (1, 3),
        "medium+custom",
    )
    assert get_difficulty({"count_query": "all"}).image_size == EASY.image_size  # base defaults to easy
    with pytest.raises(ValueError, match="unknown difficulty field"):
        get_difficulty({"colour": ["red"]})
    with pytest.raises(ValueError, match="count_query"):
        get_difficulty({"count_query": "some"})
    assert get_difficulty({"shapes": ["circle"], "count_query": "all"}).shapes == ("circle",)


def test_one_shape_class_is_refused_only_where_counting_needs_others():
    one_class = {"base": "easy", "shapes": ["circle"]}
    with pytest.raises(ValueError, match="two shape classes"):
        ShapesCounting(split="train", size=4, difficulty=one_class)  # one class among others needs others
    assert ShapesCounting(split="train", size=4, difficulty={**one_class, "count_query": "all"})[0].count >= 0
    for env_id in ("PerceptionR1/Detection-v0", "PerceptionR1/Grounding-v0"):
        env = gym.make(env_id, difficulty=one_class)
        _, info = env.reset(seed=0)
        sample = env.unwrapped.sample
        assert set(sample.labels) == {"circle"}, env_id
        assert env.unwrapped.score(env.unwrapped.oracle_answer()).info["reward_components"], env_id
        assert (
            env.unwrapped.score(env.unwrapped.oracle_answer()).reward
            == env.unwrapped.score(env.unwrapped.oracle_answer(exact=True)).reward
        ), env_id


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_counting_every_object_is_balanced_in_every_split(split):
    """An empty image has one form; it must not pile up in the one split its hash picks."""
    ds = ShapesCounting(split=split, size=400, difficulty={"base": "easy", "count_query": "all"})
    samples = [ds[i] for i in range(len(ds))]
    counts = np.bincount([s.count for s in samples], minlength=5)
    assert len(counts) == 5 and counts.min() >= 50 and counts.max() <= 115  # 80 each if uniform
    for s in samples:
        assert s.query == "object" and s.count == len(s.meta["objects"]) == len(s.points)
        assert (s.count == 0) == (s.image.std() == 0)  # nothing drawn on an empty image
