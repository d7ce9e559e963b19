"""Bad and unusual image files, made on the fly (shared by the face, pipeline and CLI tests)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "sam_age" / "data" / "astronaut.jpg"


def sample() -> Image.Image:
    return Image.open(SAMPLE).convert("RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb(path: Path, side: int = 100_000) -> Path:
    """A valid PNG header claiming side x side pixels (10 gigapixels), with almost no data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )
    return path


def write_rotated(path: Path) -> Path:
    """The sample stored lying on its side with EXIF orientation 6 (rotate 90 CW to view)."""
    img = sample().crop((0, 0, 400, 512)).transpose(Image.ROTATE_90)  # upright 400x512, stored 512x400
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, exif=exif.tobytes(), quality=92)
    return path


def write_grey16(path: Path) -> Path:
    a = np.asarray(sample().convert("L"), dtype=np.uint16) * 257
    Image.fromarray(a.astype(np.uint16)).save(path)  # 16-bit greyscale PNG
    return path


def write_rgba(path: Path) -> Path:
    img = sample().convert("RGBA")
    img.putalpha(Image.new("L", img.size, 255))
    a = np.asarray(img).copy()
    a[:40, :40, 3] = 0  # a transparent corner -> white
    Image.fromarray(a, "RGBA").save(path)
    return path


def write_bad_files(folder: Path) -> dict:
    """name -> path for every kind of unusable input."""
    folder.mkdir(parents=True, exist_ok=True)
    sample().save(folder / "good.jpg", quality=92)
    data = (folder / "good.jpg").read_bytes()
    files = {
        "corrupt": folder / "corrupt.jpg",
        "truncated": folder / "truncated.jpg",
        "text": folder / "notes.png",
        "blank": folder / "blank.png",
        "tiny": folder / "tiny.png",
        "bomb": folder / "bomb.png",
    }
    files["corrupt"].write_bytes(data[:20] + bytes(range(256)) * 8)
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["text"].write_text("this is not an image\n")
    Image.new("RGB", (128, 128), (200, 180, 160)).save(files["blank"])
    Image.new("RGB", (16, 16), (200, 180, 160)).save(files["tiny"])
    write_bomb(files["bomb"])
    (folder / "good.jpg").unlink()
    return files


GROUP_PHOTO_PACKAGE = "insightface"  # its wheel ships data/images/t1.jpg: 1280x886, six faces
GROUP_PHOTO = ("data", "images", "t1.jpg")


def group_photo_path():
    """A real photo of several people: the sample ``t1.jpg`` that the ``insightface`` wheel
    ships (six faces at a table; dlib finds all six). Only the file is used: the package
    is installed with ``pip install --no-deps insightface==2.1`` (``.ci/run`` does it) and
    never imported. ``None`` when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(GROUP_PHOTO_PACKAGE)  # finds the folder, runs nothing
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*GROUP_PHOTO)
        if path.is_file():
            return path
    return None


def group_photo() -> Image.Image:
    """The group photo, or skip the test (with how to get it)."""
    import pytest

    path = group_photo_path()
    if path is None:
        pytest.skip("no group photo: pip install --no-deps insightface==2.1 (for its sample t1.jpg)")
    return Image.open(path).convert("RGB")


def standin_like_face(seed: int = 0, size: int = 256) -> Image.Image:
    """What the random stand-in SAM makes of a face: saturated colour blotches with fine
    grain (no face at all), reproducible without running the model."""
    rng = np.random.RandomState(seed)
    low = Image.fromarray(np.uint8(rng.rand(6, 6, 3) * 255)).resize((size, size), Image.BICUBIC)
    a = (np.asarray(low, np.float64) - 128.0) * 2.5 + 128.0 + rng.randn(size, size, 3) * 18.0
    return Image.fromarray(np.uint8(np.clip(a, 0, 255)))
