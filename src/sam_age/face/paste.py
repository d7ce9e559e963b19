"""Put an aligned (aged) face back where it came from in the original photo.

The alignment quad is a parallelogram, so the aligned crop is an affine image of the
photo; pasting inverts that affine map. A feathered, rounded square mask hides the seam, and the
photo outside the quad stays bit-for-bit the same.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FEATHER = 0.08  # fraction of the face size over which the mask fades in
INSET = 0.03  # keep the mask off the crop's edge, where reflection padding may show
CORNER = 0.3  # rounded corners: the crop's corners are background, not face


def face_mask(size: int, feather: float = FEATHER, inset: float = INSET) -> Image.Image:
    """A white rounded square with soft edges, ``size`` x ``size`` (mode L)."""
    mask = Image.new("L", (size, size), 0)
    margin = int(round(size * (inset + feather)))
    ImageDraw.Draw(mask).rounded_rectangle([margin, margin, size - 1 - margin, size - 1 - margin],
                                           radius=int(size * CORNER), fill=255)
    radius = max(1.0, size * feather / 2.0)
    return mask.filter(ImageFilter.GaussianBlur(radius))


def _photo_to_face_affine(quad: np.ndarray, face_size: int):
    """Coefficients (a, b, c, d, e, f) with face = (a x + b y + c, d x + e y + f) for a
    photo point (x, y), both in continuous coordinates (pixel centres at +0.5)."""
    q = np.asarray(quad, dtype=np.float64) + 0.5  # as the alignment's QUAD transform
    tl, bl, tr = q[0], q[1], q[3]
    m = np.column_stack([tr - tl, bl - tl]) / face_size  # face (u, v) -> photo offset
    inv = np.linalg.inv(m)
    shift = -inv @ tl
    return (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])


def paste_face(photo: Image.Image, face: Image.Image, quad: np.ndarray,
               mask: Optional[Image.Image] = None) -> Image.Image:
    """Return a copy of ``photo`` (same size) with ``face`` warped into ``quad``.

    ``face`` may be any square size (256 or the 1024 px generator output); ``quad`` is the
    float [4, 2] source quad from :func:`sam_age.face.align.align_face`."""
    photo = photo.convert("RGB")
    size = face.size[0]
    if mask is None:
        mask = face_mask(size)
    coeffs = _photo_to_face_affine(quad, size)
    warped = face.convert("RGB").transform(photo.size, Image.AFFINE, coeffs, Image.BICUBIC)
    warped_mask = mask.transform(photo.size, Image.AFFINE, coeffs, Image.BILINEAR, fillcolor=0)
    return Image.composite(warped, photo, warped_mask)
