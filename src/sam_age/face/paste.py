"""Put an aligned (aged) face back where it came from in the original photo.

The alignment quad is a parallelogram, so the aligned crop is an affine image of the
photo; pasting inverts that affine map. The photo outside the mask stays bit-for-bit the
same. Two things hide the seam (measured by :func:`sam_age.face.mask.seam_ratio`):

* the mask (:mod:`sam_age.face.mask`): the face from its 68 landmarks, feathered
  (``mask="face"``, the default when landmarks are known), or the rounded box
  (``mask="box"``);
* colour matching (``colour_match=True``): the generator drifts in tone and white balance,
  so the aged face's CIELAB channels are shifted and scaled (Reinhard's mean/std transfer)
  to match the photo's over a ring just inside the mask border -- the pixels where the
  two meet. One affine map per channel for the whole face: the aged texture and its
  local contrast are kept, only its overall colour is brought to the photo's. The std
  scale is held to 0.5..2 so a flat or odd ring cannot blow the face up.
"""

from __future__ import annotations

import warnings
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageFilter

from .mask import box_mask, face_mask, landmarks_in_face, photo_to_face_affine

STATS_SIZE = 256  # colour statistics are taken at 256 px whatever the face size
RING = (0.5, 0.98)  # the ring of the mask (face coordinates) whose colours are matched
STD_SCALE = (0.5, 2.0)
LUT_SIZE = 33  # the colour map's grid over the RGB cube (fast form)

# kept for callers of the earlier module
_photo_to_face_affine = photo_to_face_affine

__all__ = ["paste_face", "match_colour", "face_mask", "box_mask"]


def _face_to_photo(img: Image.Image, quad, photo_size, resample, fill=0) -> Image.Image:
    coeffs = photo_to_face_affine(quad, img.size[0])
    return img.transform(photo_size, Image.AFFINE, coeffs, resample, fillcolor=fill)


def _photo_to_face(photo: Image.Image, quad, size: int, resample=Image.BILINEAR) -> Image.Image:
    """The photo seen through the quad (the alignment's own transform, without padding)."""
    return photo.transform(
        (size, size), Image.QUAD, tuple((np.asarray(quad, np.float64) + 0.5).flatten()), resample, fillcolor=0
    )


def _lab(rgb01: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb01)


def _rgb01(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _weighted_stats(lab: np.ndarray, w: np.ndarray):
    w = w / w.sum()
    mean = np.tensordot(w, lab, axes=([0, 1], [0, 1]))
    var = np.tensordot(w, (lab - mean) ** 2, axes=([0, 1], [0, 1]))
    return mean, np.sqrt(np.maximum(var, 1e-8))


def _transfer(rgb01: np.ndarray, mf, scale, mr) -> np.ndarray:
    """The colour map itself, on RGB values in [0, 1] of any shape [..., 3]."""
    from skimage.color import lab2rgb

    lab = (_lab(rgb01) - mf) * scale + mr
    with warnings.catch_warnings():  # out-of-gamut colours are clipped to the RGB cube
        warnings.simplefilter("ignore", UserWarning)
        return np.clip(lab2rgb(lab), 0.0, 1.0)


def match_colour(
    face: Image.Image, reference: Image.Image, weight: np.ndarray, exact: Optional[bool] = None
) -> Image.Image:
    """``face`` with its Lab mean/std over ``weight`` (a [256, 256] array, or the
    reference's size) matched to ``reference``'s (the photo seen through the same quad).

    The map is the same for every pixel (a function of its RGB value), so the fast form
    evaluates it exactly on a 33^3 grid of the RGB cube and applies it with PIL's
    trilinear 3D LUT (:class:`PIL.ImageFilter.Color3DLUT`): about 6x faster on 1024 px
    faces. ``exact=True`` converts every pixel (the reference form; a test holds the two
    within a few 8-bit levels); ``None`` picks it for faces with fewer pixels than the
    grid costs (256 px)."""
    n = weight.shape[0]
    f_small = face if face.size == (n, n) else face.resize((n, n), Image.BILINEAR)
    r_small = reference if reference.size == (n, n) else reference.resize((n, n), Image.BILINEAR)
    mf, sf = _weighted_stats(_lab(_rgb01(f_small)), weight)
    mr, sr = _weighted_stats(_lab(_rgb01(r_small)), weight)
    scale = np.clip(sr / sf, *STD_SCALE)
    face = face.convert("RGB")
    if exact is None:
        exact = face.width * face.height <= 2 * LUT_SIZE**3
    if exact:
        rgb = _transfer(_rgb01(face), mf, scale, mr)
        return Image.fromarray(np.rint(rgb * 255.0).astype(np.uint8), "RGB")
    grid = np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32)
    b, g, r = np.meshgrid(grid, grid, grid, indexing="ij")  # red varies fastest, as PIL wants
    table = _transfer(np.stack([r, g, b], axis=-1), mf, scale, mr)
    return face.filter(ImageFilter.Color3DLUT(LUT_SIZE, table.reshape(-1).astype(np.float64).tolist()))


def _ring_weight(photo: Image.Image, quad, mask: Image.Image) -> Optional[np.ndarray]:
    """Where to compare colours (``STATS_SIZE`` px face coordinates): the ring of the
    mask just inside its border, where the photo is (not outside the picture)."""
    m = np.asarray(mask.resize((STATS_SIZE, STATS_SIZE), Image.BILINEAR), dtype=np.float64) / 255.0
    inside = np.asarray(_photo_to_face(Image.new("L", photo.size, 255), quad, STATS_SIZE)) > 250
    ring = (m >= RING[0]) & (m <= RING[1]) & inside
    if ring.sum() < 200:  # a thin mask: the whole of it
        ring = (m >= RING[0]) & inside
    return ring.astype(np.float64) if ring.sum() >= 50 else None


def paste_face(
    photo: Image.Image,
    face: Image.Image,
    quad: np.ndarray,
    mask: Union[str, Image.Image, None] = None,
    *,
    landmarks: Optional[np.ndarray] = None,
    colour_match: bool = True,
    reference: Optional[Image.Image] = None,
    return_mask: bool = False,
):
    """Return a copy of ``photo`` (same size) with ``face`` warped into ``quad``.

    ``face`` may be any square size (256 or the 1024 px generator output); ``quad`` is the
    float [4, 2] source quad from :func:`sam_age.face.align.align_face`, ``landmarks`` the
    face's 68 landmarks in the photo (needed by ``mask="face"``). ``mask``: ``"face"``
    (default; the box when ``landmarks`` is None), ``"box"`` or a mode-L image of the
    face's size. ``reference`` is the photo whose colours are matched (default ``photo``;
    the untouched original when several faces are pasted one after another).
    ``return_mask=True`` -> ``(image, mask in the photo's coordinates, mode L)``."""
    photo = photo.convert("RGB")
    face = face.convert("RGB")
    size = face.size[0]
    if mask is None or isinstance(mask, str):
        kind = mask or "face"
        lm = None if landmarks is None else landmarks_in_face(landmarks, quad, size)
        mask = face_mask(size, lm, kind)
    elif mask.size != face.size:
        mask = mask.resize(face.size, Image.BILINEAR)
    if colour_match:
        ref = (reference or photo).convert("RGB")
        weight = _ring_weight(ref, quad, mask)
        if weight is not None:
            face = match_colour(face, _photo_to_face(ref, quad, STATS_SIZE), weight)
    warped = _face_to_photo(face, quad, photo.size, Image.BICUBIC)
    warped_mask = _face_to_photo(mask.convert("L"), quad, photo.size, Image.BILINEAR)
    out = Image.composite(warped, photo, warped_mask)
    return (out, warped_mask) if return_mask else out
