"""Where an aged face goes back into the photo: paste masks in aligned-face coordinates,
and the seam measure that compares them.

Two masks, both ``size`` x ``size`` (the aged face's size), mode ``L``:

* :func:`landmark_mask` (``--mask face``, the default): the face itself -- the convex hull
  of the 68-landmark jaw line (points 0..16) and a forehead extension (the eyebrows,
  17..26, raised by about a brow-to-nose-base distance, less at the outer ends), blurred
  with a Gaussian of ``feather * size`` so the face fades into the photo over the
  jaw line, and cut to the rounded box so the crop's reflected padding never shows.
  Hair, ears and background stay the photo's own.
* :func:`box_mask` (``--mask box``): the earlier rounded square with soft edges; the
  fallback when there are no landmarks (``--no-align``, faces from elsewhere).

The seam (:func:`seam_ratio`): mean colour gradient magnitude (Sobel on R, G, B) of the
pasted photo over a thin band along the mask's border (its 0.5 contour in the photo,
+- ``width`` px), divided by the same over the same band of the original photo. 1.0 means
the paste added no edge energy along its border; a hard-edged paste of a face in
another colour scores well above 1. It does not depend on the face being a good one:
with the random stand-in weights the aged face is noise, and the ratio still shows what
feathering (a smaller mask slope) and colour matching (a smaller colour step across the
border) remove.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BOX_FEATHER = 0.08  # fraction of the face size over which the box mask fades in
INSET = 0.03  # keep every mask off the crop's edge, where reflection padding may show
CORNER = 0.3  # rounded corners: the crop's corners are background, not face

FACE_FEATHER = 0.025  # Gaussian sigma of the landmark mask, as a fraction of the face size
FOREHEAD = 0.8  # forehead height above the brows, in brow-centre-to-nose-base distances
FOREHEAD_TAPER = (0.55, 0.8, 0.95, 1.0, 1.0, 1.0, 1.0, 0.95, 0.8, 0.55)  # brows 17..26
JAW, BROWS, NOSE_BASE = slice(0, 17), slice(17, 27), 33


def box_mask(size: int, feather: float = BOX_FEATHER, inset: float = INSET) -> Image.Image:
    """A white rounded square with soft edges, ``size`` x ``size`` (mode L)."""
    mask = Image.new("L", (size, size), 0)
    margin = int(round(size * (inset + feather)))
    ImageDraw.Draw(mask).rounded_rectangle(
        [margin, margin, size - 1 - margin, size - 1 - margin], radius=int(size * CORNER), fill=255
    )
    radius = max(1.0, size * feather / 2.0)
    return mask.filter(ImageFilter.GaussianBlur(radius))


def photo_to_face_affine(quad: np.ndarray, face_size: int):
    """Coefficients (a, b, c, d, e, f) with face = (a x + b y + c, d x + e y + f) for a
    photo point (x, y), both in continuous coordinates (pixel centres at +0.5) -- the
    inverse of the alignment's QUAD transform, and what PIL's AFFINE transform takes."""
    q = np.asarray(quad, dtype=np.float64) + 0.5
    tl, bl, tr = q[0], q[1], q[3]
    m = np.column_stack([tr - tl, bl - tl]) / face_size  # face (u, v) -> photo offset
    inv = np.linalg.inv(m)
    shift = -inv @ tl
    return (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])


def landmarks_in_face(landmarks: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Photo landmarks (pixel indices, dlib's convention) -> aligned-face pixel indices."""
    a, b, c, d, e, f = photo_to_face_affine(quad, size)
    p = np.asarray(landmarks, dtype=np.float64) + 0.5
    return np.stack([a * p[:, 0] + b * p[:, 1] + c, d * p[:, 0] + e * p[:, 1] + f], axis=1) - 0.5


def face_outline(lm: np.ndarray) -> np.ndarray:
    """The face's outline (float [K, 2], convex, counter-clockwise) from 68 landmarks in
    any coordinates: jaw line plus the brows raised into the forehead."""
    lm = np.asarray(lm, dtype=np.float64)
    brows = lm[BROWS]
    centre = brows.mean(axis=0)
    up = centre - lm[8]  # chin -> brows
    up /= max(np.hypot(*up), 1e-6)
    height = FOREHEAD * np.hypot(*(centre - lm[NOSE_BASE]))
    forehead = brows + np.outer(np.asarray(FOREHEAD_TAPER) * height, up)
    return _convex_hull(np.concatenate([lm[JAW], forehead]))


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain (27 points: no library needed)."""
    pts = sorted(map(tuple, points))
    if len(pts) < 3:
        return np.asarray(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1])


def landmark_mask(
    landmarks_face: np.ndarray, size: int, feather: float = FACE_FEATHER, inset: float = INSET
) -> Image.Image:
    """The feathered face mask (mode L, ``size`` x ``size``) from 68 landmarks given in
    aligned-face pixel coordinates (:func:`landmarks_in_face`)."""
    outline = face_outline(landmarks_face)
    hard = Image.new("L", (size, size), 0)
    ImageDraw.Draw(hard).polygon([tuple(p) for p in outline], fill=255)
    soft = hard.filter(ImageFilter.GaussianBlur(max(0.5, feather * size)))
    # never past the box: the crop's edge may be reflected padding
    limit = box_mask(size, feather=min(BOX_FEATHER, 2 * feather), inset=inset)
    return Image.fromarray(np.minimum(np.asarray(soft), np.asarray(limit)), "L")


def face_mask(size: int, landmarks_face: Optional[np.ndarray] = None, kind: str = "face") -> Image.Image:
    """``kind="face"`` with landmarks -> :func:`landmark_mask`; otherwise :func:`box_mask`."""
    if kind not in ("face", "box"):
        raise ValueError(f"mask kind must be 'face' or 'box', not {kind!r}")
    if kind == "face" and landmarks_face is not None:
        return landmark_mask(landmarks_face, size)
    return box_mask(size)


# -- the seam ------------------------------------------------------------------------------


def gradient_magnitude(img) -> np.ndarray:
    """Colour gradient magnitude per pixel: the Sobel derivatives of R, G and B (0..255),
    root of the sum of squares over both directions and the three channels, / sqrt(3) so
    that a grey edge scores its grey step (a colour seam counts as well as a bright one)."""
    from scipy.ndimage import sobel

    a = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float64)
    total = np.zeros(a.shape[:2])
    for c in range(3):
        total += sobel(a[..., c], axis=0) ** 2 + sobel(a[..., c], axis=1) ** 2
    return np.sqrt(total / 3.0) / 8.0  # /8: the Sobel weights sum to 8


def seam_band(mask, width: float) -> np.ndarray:
    """Pixels within ``width`` px of the mask's 0.5 contour (bool, the mask's shape)."""
    from scipy.ndimage import binary_erosion, distance_transform_edt

    m = np.asarray(mask, dtype=np.float64)
    if m.max() > 1.0:
        m = m / 255.0
    inside = m >= 0.5
    contour = inside & ~binary_erosion(inside)
    if not contour.any():
        return np.zeros_like(inside)
    return distance_transform_edt(~contour) <= width


def seam_ratio(original, pasted, mask, width: float = 3.0) -> float:
    """Mean gradient magnitude of ``pasted`` along the border of ``mask`` (the photo-space
    mask it was pasted with), relative to the same band of ``original``."""
    m = np.asarray(mask, dtype=np.float64)
    ys, xs = np.nonzero(m > 0)
    if len(xs) == 0:
        raise ValueError("the mask has no border in this photo")
    pad = int(np.ceil(width)) + 3  # only the mask's neighbourhood matters (and costs)
    box = (
        max(xs.min() - pad, 0),
        max(ys.min() - pad, 0),
        min(xs.max() + pad + 1, m.shape[1]),
        min(ys.max() + pad + 1, m.shape[0]),
    )
    band = seam_band(m[box[1] : box[3], box[0] : box[2]], width)
    if not band.any():
        raise ValueError("the mask has no border in this photo")
    crop = [
        np.asarray(im.convert("RGB") if isinstance(im, Image.Image) else im)[box[1] : box[3], box[0] : box[2]]
        for im in (original, pasted)
    ]
    return float(gradient_magnitude(crop[1])[band].mean() / max(gradient_magnitude(crop[0])[band].mean(), 1e-6))
