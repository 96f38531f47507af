"""Image files as real data has them: every PIL mode, EXIF orientation, bad files; errors name file + entry."""

import json

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import perception_env  # noqa: F401  (registers the envs)
from perception_env.data import (
    CocoDetection,
    DatasetFormatError,
    JsonlDataset,
    PageOcr,
    PixmoCount,
    RefCocoGrounding,
)
from perception_env.data.loaders.images import to_rgb

from .fixtures import write_exif_png, write_grey16_ramp, write_jsonl, write_png, write_truncated_jpeg


# -- one image, one entry, in each loader's format ----------------------------------------------------
def _coco(tmp_path, image, size=None, **kw):
    width, height = size or Image.open(tmp_path / image).size
    ann = tmp_path / "instances.json"
    data = {
        "images": [{"id": 5, "file_name": image, "width": width, "height": height}],
        "annotations": [{"id": 50, "image_id": 5, "category_id": 1, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": 1, "name": "cup"}],
    }
    ann.write_text(json.dumps(data))
    return (lambda: CocoDetection(ann, tmp_path, **kw)), ann, "image 5"


def _refcoco(tmp_path, image, size=None, **kw):
    load, instances, entry = _coco(tmp_path, image, size)
    refs = tmp_path / "refs.json"
    ref = {"ref_id": 1, "ann_id": 50, "image_id": 5, "split": "train", "category_id": 1}
    ref["sentences"] = [{"sent": "cup"}]
    refs.write_text(json.dumps([ref]))
    return (lambda: RefCocoGrounding(refs, instances, tmp_path, "train", **kw)), instances, entry


def _jsonl_record(tmp_path, name, record, size):
    if size is not None:
        record = {**record, "width": size[0], "height": size[1]}
    return write_jsonl(tmp_path / name, [record])


def _jsonl(tmp_path, image, size=None, **kw):
    path = _jsonl_record(tmp_path, "ocr.jsonl", {"image": image, "text": "t"}, size)
    return (lambda: JsonlDataset(path, "ocr", **kw)), path, "line 1"


def _pixmo(tmp_path, image, size=None, **kw):
    record = {"image": image, "label": "cup", "count": 1, "points": [{"x": 50.0, "y": 25.0}]}
    path = _jsonl_record(tmp_path, "train.jsonl", record, size)
    return (lambda: PixmoCount(path, **kw)), path, "line 1"


def _page_ocr(tmp_path, image, size=None, **kw):
    path = _jsonl_record(tmp_path, "test.jsonl", {"image": image, "text": "page"}, size)
    return (lambda: PageOcr(path, **kw)), path, "line 1"


LOADERS = [_coco, _refcoco, _jsonl, _pixmo, _page_ocr]


def _load_one(tmp_path, image, size=None, loader=_jsonl, **kw):
    load, _, _ = loader(tmp_path, image, size, **kw)
    return load()[0]


# -- pixel modes -----------------------------------------------------------------------------------------
def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    write_grey16_ramp(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    pixels = _load_one(tmp_path, "g16.png").load_image()
    assert pixels.shape == (4, 256, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[2, :, 1], np.arange(256))  # 257 * x -> x, every channel
    assert (pixels == 255).mean() == pytest.approx(1 / 256)  # only the last column (was 255/256 of them)


def test_16_bit_pgm_mode_i_is_scaled(tmp_path):
    ramp = (np.arange(0, 256, 5, dtype=np.uint32) * 257).astype(np.uint16).reshape(1, -1)
    Image.fromarray(ramp).save(tmp_path / "g.pgm")
    assert Image.open(tmp_path / "g.pgm").mode == "I"
    np.testing.assert_array_equal(_load_one(tmp_path, "g.pgm").load_image()[0, :, 0], np.arange(0, 256, 5))


def test_transparent_pixels_are_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (255, 0, 0, 128)  # half red on white: R 255, G = B = 255 * 127/255
    rgba[0, 2] = (10, 20, 30, 0)  # fully transparent: white, whatever colour it stores
    Image.fromarray(rgba).save(tmp_path / "a.png")
    pixels = _load_one(tmp_path, "a.png").load_image()
    np.testing.assert_array_equal(pixels[0, 0], [255, 0, 0])
    np.testing.assert_allclose(pixels[0, 1], [255, 127, 127], atol=1)
    np.testing.assert_array_equal(pixels[0, 2], [255, 255, 255])
    np.testing.assert_array_equal(pixels[1], [[255, 255, 255]] * 3)  # was black


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(np.array([[[9, 0], [9, 255]]], np.uint8), "LA"),
        lambda: _palette_with_transparent_index(),
        lambda: _with_info(Image.fromarray(np.array([[7, 9]], np.uint8)), transparency=7),  # L + tRNS
        lambda: _with_info(Image.fromarray(np.array([[2570, 2313]], np.uint16)), transparency=2570),
    ],
    ids=["LA", "P+tRNS", "L+tRNS", "I;16+tRNS"],
)
def test_every_transparent_mode_is_white_where_transparent(make):
    im = make()
    pixels = to_rgb(im)
    np.testing.assert_array_equal(pixels[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(pixels[0, 1], [9, 9, 9])  # the opaque pixel: grey 9 (2313 = 9 * 257)


def _palette_with_transparent_index():
    im = Image.fromarray(np.array([[0, 1]], np.uint8), "L").convert("P")
    im.putpalette([200, 0, 0, 9, 9, 9] + [0, 0, 0] * 254)
    im.info["transparency"] = 0
    return im


def _with_info(im, **info):
    im.info.update(info)
    return im


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "YCbCr"])
def test_opaque_8_bit_modes_convert_as_pil_does(mode):
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).convert(mode)
    np.testing.assert_array_equal(to_rgb(im), np.asarray(im.convert("RGB")))


def test_big_endian_16_bit_is_scaled():
    im = Image.fromarray((np.arange(6, dtype=np.uint16).reshape(2, 3) * 257 * 40).astype(">u2"))
    assert im.mode == "I;16B"
    np.testing.assert_array_equal(to_rgb(im)[..., 2], np.arange(6).reshape(2, 3) * 40)


# -- EXIF orientation ------------------------------------------------------------------------------------
def _white_top_rows(pixels):
    return pixels[:10].min() == 255 and pixels[10:].max() == 0


def test_coco_annotations_in_the_stored_frame_keep_the_stored_pixels(tmp_path):
    write_exif_png(tmp_path / "a.png", orientation=6)  # stored 40x20, upright 20x40
    s = _load_one(tmp_path, "a.png", (40, 20), _coco)
    pixels = s.load_image()
    assert (s.width, s.height) == (40, 20) and pixels.shape == (20, 40, 3)
    assert pixels[:, :10].min() == 255 and pixels[:, 10:].max() == 0


@pytest.mark.parametrize("loader", [_coco, _refcoco, _jsonl])
def test_annotations_in_the_upright_frame_get_upright_pixels(tmp_path, loader):
    write_exif_png(tmp_path / "a.png", orientation=6)
    s = _load_one(tmp_path, "a.png", (20, 40), loader)
    pixels = s.load_image()
    assert (s.width, s.height) == (20, 40) and pixels.shape == (40, 20, 3)  # was (20, 40, 3)
    assert _white_top_rows(pixels)  # orientation 6: the stored left columns are the top


def test_jsonl_without_a_size_is_upright_and_pixmo_points_follow(tmp_path):
    write_exif_png(tmp_path / "a.png", orientation=6)
    s = _load_one(tmp_path, "a.png")
    assert (s.width, s.height) == (20, 40) and _white_top_rows(s.load_image())
    pixmo = _load_one(tmp_path, "a.png", loader=_pixmo)
    np.testing.assert_allclose(pixmo.points, [[10.0, 10.0]])  # 50% of 20 px, 25% of 40 px upright


def test_rotation_by_180_ties_go_to_each_datasets_convention(tmp_path):
    write_exif_png(tmp_path / "a.png", orientation=3)  # 180 degrees: both frames are 40x20
    assert _load_one(tmp_path, "a.png", loader=_coco).load_image()[:, :10].min() == 255  # COCO: stored
    assert _load_one(tmp_path, "a.png").load_image()[:, -10:].min() == 255  # JSONL: upright
    ignored = _load_one(tmp_path, "a.png", exif_orientation="ignore").load_image()
    assert ignored[:, :10].min() == 255


@pytest.mark.parametrize(
    "size, kw",
    [((30, 30), {}), ((40, 20), {"exif_orientation": "apply"}), ((20, 40), {"exif_orientation": "ignore"})],
)
@pytest.mark.parametrize("loader", [_coco, _jsonl])
def test_declared_size_that_fits_no_allowed_frame_fails_at_load(tmp_path, loader, size, kw):
    write_exif_png(tmp_path / "a.png", orientation=6)
    load, file, entry = loader(tmp_path, "a.png", size, **kw)
    with pytest.raises(DatasetFormatError) as e:
        load()
    message = str(e.value)
    assert f"{file}, {entry}" in message and f"declared size {size[0]}x{size[1]}" in message
    assert str(tmp_path / "a.png") in message
    assert "40x20 stored; 20x40 upright by its EXIF orientation 6" in message


def test_unknown_exif_policy_is_refused(tmp_path):
    write_png(tmp_path / "a.png")
    for loader in LOADERS:
        with pytest.raises(ValueError, match="exif_orientation must be one of"):
            loader(tmp_path, "a.png", exif_orientation="upright")[0]()


# -- bad files: at load where the header shows it, at reset otherwise; always file and entry --------------
def _text_file(path):
    path.write_text("this is not an image")


def _float_tiff(path):
    Image.fromarray(np.zeros((30, 40), np.float32)).save(path, format="TIFF")


def _bomb(path):
    write_png(path)  # 40x30 = 1200 pixels: a bomb once MAX_IMAGE_PIXELS is 500 (PIL refuses above twice it)


@pytest.mark.parametrize(
    "make, problem",
    [
        (_text_file, "cannot identify image file"),
        (_float_tiff, "mode F: 32-bit float pixels have no defined display range"),
        (_bomb, "could be decompression bomb DOS attack. (PIL.Image.MAX_IMAGE_PIXELS = 500"),
    ],
    ids=["text-as-png", "float", "bomb"],
)
@pytest.mark.parametrize("loader", LOADERS)
def test_unreadable_image_fails_at_load_naming_file_and_entry(tmp_path, monkeypatch, loader, make, problem):
    make(tmp_path / "a.png")
    load, file, entry = loader(tmp_path, "a.png", (40, 30))
    if make is _bomb:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(DatasetFormatError) as e:
        load()
    message = str(e.value)
    assert message.startswith(f"{file}, {entry}: ") and str(tmp_path / "a.png") in message
    assert problem in message


@pytest.mark.parametrize("loader", LOADERS)
def test_truncated_image_fails_at_reset_naming_file_and_entry(tmp_path, loader):
    write_truncated_jpeg(tmp_path / "a.jpg")
    load, file, entry = loader(tmp_path, "a.jpg", (40, 30))
    sample = load()[0]  # the header is intact: loading succeeds
    with pytest.raises(DatasetFormatError) as e:
        sample.load_image()
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'a.jpg'}, sample {sample.sample_id!r} (")
    assert str(file) in message and entry in message
    assert "cannot decode image: image file is truncated" in message


def test_truncated_image_error_comes_out_of_env_reset(tmp_path):
    write_truncated_jpeg(tmp_path / "a.jpg")
    path = write_jsonl(tmp_path / "o.jsonl", [{"image": "a.jpg", "text": "t"}])
    env = gym.make("PerceptionR1/OCR-v0", source="jsonl", data_kwargs={"path": str(path)})
    expected = r"a\.jpg, sample 'o/1' \(.*o\.jsonl, line 1\): cannot decode"
    with pytest.raises(DatasetFormatError, match=expected):
        env.reset(seed=0)


def test_image_replaced_after_loading_fails_at_reset(tmp_path):
    write_png(tmp_path / "a.png", 40, 30)
    sample = _load_one(tmp_path, "a.png", loader=_coco)
    write_png(tmp_path / "a.png", 30, 40)
    with pytest.raises(DatasetFormatError, match=r"decoded 30x40 pixels, but the annotations are in a 40x30"):
        sample.load_image()
