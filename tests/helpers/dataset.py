"""A small folder of photos for dataset runs: faces made from the bundled portrait (crops,
flips, scales), one photo without a face and one truncated JPEG (shared by the dataset
tests and ``benchmarks/dataset.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image, ImageOps

from .images import sample

# name -> what a run must report for it
GOOD, NO_FACE, FAILED = "ok", "no-face", "failed"


def face_variant(k: int, size=None) -> Image.Image:
    """The k-th distinct photo of the portrait's face (all found by the detector);
    ``size``: a square of that side instead of 300..448 px."""
    img = sample()
    w, h = img.size
    crops = [(40, 0, 472, 432), (0, 0, w, h), (20, 10, 500, 490), (60, 0, 460, 400)]
    img = img.crop(crops[k % len(crops)])
    if (k // len(crops)) % 2:
        img = ImageOps.mirror(img)
    side = size or 300 + 37 * (k % 5)
    return img.resize((side, side), Image.LANCZOS)


def write_faces(folder: Path, n: int, prefix: str = "face", size=None) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        p = folder / f"{prefix}_{k:03d}.{'png' if k % 3 == 2 else 'jpg'}"
        face_variant(k, size).save(p, **({} if p.suffix == ".png" else {"quality": 90}))
        paths.append(p)
    return paths


def write_dataset(folder: Path) -> Dict[str, str]:
    """Six photos, sorted so that a 2-rank split gives each rank two faces and one bad
    input: ``{file name: expected status}``."""
    folder.mkdir(parents=True, exist_ok=True)
    expect = {}
    for i, name in enumerate(("a.jpg", "b.jpg", "c.png", "d.jpg")):
        face_variant(i if i < 2 else i + 4).save(folder / name, **({"quality": 90} if name.endswith("jpg") else {}))
        expect[name] = GOOD
    data = (folder / "a.jpg").read_bytes()
    (folder / "e_truncated.jpg").write_bytes(data[: len(data) // 3])
    expect["e_truncated.jpg"] = FAILED
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (240, 1))] * 3, -1)).save(folder / "f_gradient.png")
    expect["f_gradient.png"] = NO_FACE
    return expect
