"""The one image reader: every odd or broken input becomes RGB or a one-line ImageReadError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sam_age.errors import ImageReadError
from sam_age.images import list_inputs, read_image, to_pil, to_tensor

from ..helpers.images import sample, write_bad_files, write_grey16, write_rgba, write_rotated


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return write_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("corrupt", "not an image"),
        ("truncated", "truncated"),
        ("text", "not an image"),
        ("tiny", "too small"),
        ("bomb", "decompression bomb"),
    ],
)
def test_bad_inputs_raise_one_line(bad_files, kind, reason):
    with pytest.raises(ImageReadError) as e:
        read_image(bad_files[kind])
    msg = str(e.value)
    assert reason in msg and str(bad_files[kind]) in msg and "\n" not in msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(p)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(p, max_pixels=300 * 300 - 1)


def test_exif_rotation_applied(tmp_path):
    p = write_rotated(tmp_path / "rot.jpg")
    assert Image.open(p).size == (512, 400)
    img = read_image(p)
    assert img.size == (400, 512) and img.mode == "RGB"
    diff = np.abs(np.asarray(img, float) - np.asarray(sample().crop((0, 0, 400, 512)), float)).mean()
    assert diff < 4  # the upright picture, up to JPEG noise


def test_grey16_scaled_not_clipped(tmp_path):
    img = read_image(write_grey16(tmp_path / "g16.png"))
    a = np.asarray(img)
    assert img.mode == "RGB" and (a[..., 0] == a[..., 2]).all()
    ref = np.asarray(sample().convert("L"), float)
    assert np.abs(a[..., 0] - ref).max() <= 1


def test_rgba_composited_on_white(tmp_path):
    img = read_image(write_rgba(tmp_path / "rgba.png"))
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (255, 255, 255)
    assert img.getpixel((300, 300)) == sample().getpixel((300, 300))


def test_other_sources_and_palette():
    buf = io.BytesIO()
    sample().quantize(64).save(buf, format="PNG")
    assert read_image(buf.getvalue()).mode == "RGB"
    assert read_image(np.zeros((40, 50), np.uint16)).size == (50, 40)
    assert read_image(sample().convert("L")).mode == "RGB"


def test_tensor_round_trip():
    img = sample()
    t = to_tensor(img)
    assert t.shape == (3, 512, 512) and t.dtype == torch.float32 and -1 <= t.min() and t.max() <= 1
    back = np.asarray(to_pil(t), int) - np.asarray(img, int)
    assert back.min() >= -1 and back.max() <= 0  # truncation, as the original tensor2im


def test_list_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "d" / n).write_bytes(b"x")
    (tmp_path / "e").mkdir()
    found, missing = list_inputs(
        [
            str(tmp_path / "d"),
            str(tmp_path / "d" / "*.png"),
            str(tmp_path / "nope.jpg"),
            str(tmp_path / "e"),
            str(tmp_path / "z*.jpg"),
            str(tmp_path / "d" / "notes.txt"),
        ]
    )
    assert [p.name for p in found] == ["a.jpg", "b.png", "notes.txt"]
    assert len(missing) == 3 and "file not found" in missing[0]
