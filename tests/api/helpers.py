"""Shared bits of the API tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageOps


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def variants(portrait: bytes, n: int = 4) -> list:
    """``n`` different photos of the sample face (mirrored, tinted, shifted): their aged
    faces differ, so an answer given to the wrong client would show."""
    src = Image.open(io.BytesIO(portrait)).convert("RGB")
    out = []
    for k in range(n):
        im = ImageOps.mirror(src) if k % 2 else src
        if k >= 2:
            im = Image.eval(im, lambda v, k=k: min(255, int(v * (0.85 + 0.05 * k))))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def alone(queue, pipeline, data: bytes, ages) -> list:
    """What ``AgePipeline`` gives for this photo by itself (run on the server's model
    worker, so the model is never used by two threads): per face, per age, uint8 arrays."""
    result = queue.call(lambda: pipeline(data, ages, all_faces=True)).result()
    return [[np.asarray(im) for im in f.images] for f in result.faces]
