"""source="hf": a local Hugging Face dataset (parquet files the test writes, a save_to_disk folder), with a
column mapping, read offline as the JSONL schema of each task."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import perception_env  # noqa: F401  (registers the envs)
from perception_env.data import DatasetFormatError
from perception_env.tasks import make_dataset, sources


def picture(width: int, height: int, colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (width, height), colour)
    image.putpixel((0, 0), (1, 2, 3))  # a pixel that tells a flipped or resized image apart
    return image


def detection_rows() -> dict[str, list]:
    """Two images in a dataset's own column names: ``img``, ``bbox`` (xyxy pixels), ``category``."""
    return {
        "img": [picture(40, 30, (200, 0, 0)), picture(20, 50, (0, 200, 0))],
        "bbox": [[[1.0, 2.0, 11.0, 7.0], [5.0, 5.0, 25.0, 25.0]], [[0.0, 0.0, 20.0, 50.0]]],
        "category": [["cat", "dog"], ["cat"]],
    }


DETECTION_COLUMNS = {"image": "img", "boxes": "bbox", "labels": "category"}


def write_parquet(rows: dict[str, list], path):
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows).to_parquet(str(path))
    return path


def test_parquet_file_with_a_column_mapping(tmp_path):
    path = write_parquet(detection_rows(), tmp_path / "det.parquet")
    data = make_dataset("detection", source="hf", path=str(path), columns=DETECTION_COLUMNS)
    assert len(data) == 2 and data.categories == ("cat", "dog") and "hf" in sources()
    first, second = data[0], data[1]
    np.testing.assert_array_equal(first.boxes, [[1, 2, 11, 7], [5, 5, 25, 25]])
    assert first.labels == ("cat", "dog") and (first.width, first.height) == (40, 30)
    assert (second.width, second.height) == (20, 50) and second.labels == ("cat",)
    image = first.load_image()
    assert (
        image.shape == (30, 40, 3) and tuple(image[0, 0]) == (1, 2, 3) and tuple(image[5, 5]) == (200, 0, 0)
    )
    assert first.meta == {"row": 0} and first.sample_id != second.sample_id


def test_each_task_through_the_env(tmp_path):
    """Counting (query, points), grounding (expression, box) and OCR (text) rows, read by gym.make."""
    images = [picture(32, 32, (0, 0, 200))]
    cases = {
        "PerceptionR1/Counting-v0": (
            {"image": images, "what": ["dot"], "points": [[[3.0, 4.0], [10.0, 12.0]]]},
            {"query": "what"},
            "2",
            {"answer_format": "number"},
        ),
        "PerceptionR1/Grounding-v0": (
            {"image": images, "expression": ["the blue square"], "box": [[2.0, 2.0, 30.0, 30.0]]},
            {},
            None,
            {},
        ),
        "PerceptionR1/OCR-v0": (
            {"image": images, "transcript": ["hello"]},
            {"text": "transcript"},
            "hello",
            {},
        ),
    }
    for env_id, (rows, columns, answer, kwargs) in cases.items():
        path = write_parquet(rows, tmp_path / env_id.split("/")[1] / "train.parquet")
        env = gym.make(env_id, source="hf", data_kwargs={"path": str(path), "columns": columns}, **kwargs)
        observation, info = env.reset(options={"index": 0})
        assert observation["image"].ndim == 3 and info["sample_id"].endswith("/0")
        oracle = env.unwrapped.oracle_answer()
        assert answer is None or oracle == answer
        assert env.step(oracle)[4]["is_success"]  # the targets read from the row


def test_a_save_to_disk_folder_gives_the_envs_split(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = detection_rows()
    splits = DatasetDict(
        train=Dataset.from_dict(rows),
        test=Dataset.from_dict({key: value[1:] for key, value in rows.items()}),
    )
    splits.save_to_disk(str(tmp_path / "saved"))
    kwargs = {"path": str(tmp_path / "saved"), "columns": DETECTION_COLUMNS}
    assert len(make_dataset("detection", source="hf", split="train", **kwargs)) == 2
    test = make_dataset("detection", source="hf", split="test", **kwargs)
    assert len(test) == 1 and (test[0].width, test[0].height) == (20, 50)
    with pytest.raises(ValueError, match=r"has the splits \['test', 'train'\], not 'val'"):
        make_dataset("detection", source="hf", split="val", **kwargs)


def test_a_folder_of_parquet_files_in_the_hub_layout(tmp_path):
    rows = detection_rows()
    write_parquet(rows, tmp_path / "data" / "train-00000-of-00001.parquet")
    write_parquet({k: v[1:] for k, v in rows.items()}, tmp_path / "data" / "test-00000-of-00001.parquet")
    test = make_dataset("detection", source="hf", split="test", path=str(tmp_path), columns=DETECTION_COLUMNS)
    assert len(test) == 1 and test[0].labels == ("cat",)


def test_image_paths_relative_to_the_dataset(tmp_path):
    picture(16, 8, (9, 9, 9)).save(tmp_path / "a.png")
    path = write_parquet({"image": ["a.png"], "text": ["hi"]}, tmp_path / "ocr.parquet")
    sample = make_dataset("ocr", source="hf", path=str(path))[0]
    assert sample.image_path == str(tmp_path / "a.png") and sample.load_image().shape == (8, 16, 3)


@pytest.mark.parametrize(
    "rows, columns, problem",
    [
        (detection_rows(), {}, r"has no image column 'image' \(its columns: \['img', 'bbox', 'category'\]\)"),
        (
            detection_rows(),
            {**DETECTION_COLUMNS, "boxes": "boxes"},
            r"columns= names \['boxes'\], not columns",
        ),
        (detection_rows(), {"bounding": "bbox"}, r"columns= maps unknown fields \['bounding'\]"),
    ],
)
def test_a_wrong_column_mapping_says_what_is_there(tmp_path, rows, columns, problem):
    path = write_parquet(rows, tmp_path / "det.parquet")
    with pytest.raises(ValueError, match=problem):
        make_dataset("detection", source="hf", path=str(path), columns=columns)


def test_a_bad_row_is_named(tmp_path):
    rows = detection_rows()
    rows["bbox"][1] = [[0.0, 0.0, 25.0, 50.0]]  # beyond the 20-pixel-wide image (a pixel of slack allowed)
    path = write_parquet(rows, tmp_path / "det.parquet")
    with pytest.raises(DatasetFormatError, match=r"det.parquet, row 1: .*boxes\[0\]"):
        make_dataset("detection", source="hf", path=str(path), columns=DETECTION_COLUMNS)
    with pytest.raises(FileNotFoundError, match="Hugging Face dataset not found"):
        make_dataset("detection", source="hf", path=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="source 'hf' needs path="):
        make_dataset("detection", source="hf")
