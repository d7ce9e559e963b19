"""Paste-back masks (landmark face mask vs rounded box), colour matching, and the seam
they leave, measured on the sample portrait and on a real group photo.

The seam measure (``seam_ratio``): mean colour gradient magnitude along the mask's border
in the pasted photo / the same band in the original. It needs no trained weights: the
"aged" faces here are the unchanged face (a paste must then leave no seam), the face in
another colour (what a generator's colour drift does), and stand-in-like blotches (what
the random stand-in weights produce).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib")
pytest.importorskip("skimage")

from sam_age.face import (
    align_faces,
    landmark_mask,
    landmarks_in_face,
    match_colour,
    paste_face,  # noqa: E402
    seam_ratio,
)
from sam_age.face.mask import box_mask, face_outline, seam_band  # noqa: E402

from ..helpers.images import group_photo, sample, standin_like_face  # noqa: E402


@pytest.fixture(scope="module")
def portrait():
    photo = sample()
    return photo, align_faces(photo)


@pytest.fixture(scope="module")
def group():
    photo = group_photo()
    return photo, align_faces(photo, all_faces=True)


def _band_width(face) -> float:
    return max(2.0, 0.02 * float(np.hypot(*(face.quad[3] - face.quad[0]))))


def _seam(photo, face, aged, mask, colour_match=True) -> float:
    out, m = paste_face(
        photo, aged, face.quad, mask, landmarks=face.landmarks, colour_match=colour_match, return_mask=True
    )
    return seam_ratio(photo, out, m, _band_width(face))


def test_landmark_mask_is_the_face(portrait):
    _, (face,) = portrait
    lm = landmarks_in_face(face.landmarks, face.quad, 256)
    # the aligned face's own landmarks: eyes near FFHQ's fixed positions
    eyes = lm[36:48].mean(axis=0)
    assert 100 < eyes[0] < 156 and 95 < eyes[1] < 140
    m = np.asarray(landmark_mask(lm, 256), float) / 255
    for p in (30, 36, 45, 48, 54, 57):  # nose tip, eye corners, mouth corners, lower lip
        x, y = np.rint(lm[p]).astype(int)
        assert m[y, x] > 0.99, p
    brows = lm[17:27].mean(axis=0)
    assert m[int(brows[1]) - 25, int(brows[0])] > 0.9  # the forehead is in
    chin = lm[8]
    assert m[min(255, int(chin[1]) + 20), int(chin[0])] < 0.05  # the neck is out
    assert max(m[:, :8].max(), m[:8].max(), m[-8:].max(), m[:, -8:].max()) < 0.01  # never at the crop edge
    assert m[0, 0] == 0 and m[5, 250] == 0
    soft = ((m > 0.05) & (m < 0.95)).sum()
    assert 1500 < soft < 15000  # feathered: a soft ring, not a hard edge
    outline = face_outline(lm)
    assert len(outline) >= 8
    # 1024 px faces: the same mask, four times the size
    big = np.asarray(landmark_mask(landmarks_in_face(face.landmarks, face.quad, 1024), 1024), float) / 255
    small = np.asarray(Image.fromarray(np.uint8(big * 255)).resize((256, 256), Image.BILINEAR), float) / 255
    assert np.abs(small - m).mean() < 0.01


def test_face_mask_pastes_less_than_the_box_and_leaves_the_rest(portrait):
    photo, (face,) = portrait
    aged = standin_like_face(1)
    src = np.asarray(photo, int)
    changed = {}
    for kind in ("face", "box"):
        out = paste_face(photo, aged, face.quad, kind, landmarks=face.landmarks)
        diff = np.abs(np.asarray(out, int) - src).sum(axis=2) > 0
        q = face.quad
        ys, xs = np.nonzero(diff)
        assert xs.min() >= q[:, 0].min() - 1 and xs.max() <= q[:, 0].max() + 1
        assert ys.min() >= q[:, 1].min() - 1 and ys.max() <= q[:, 1].max() + 1
        changed[kind] = diff.sum()
    assert changed["face"] < 0.7 * changed["box"]
    # without landmarks "face" falls back to the box
    same = paste_face(photo, aged, face.quad, "face", landmarks=None)
    box = paste_face(photo, aged, face.quad, "box")
    assert np.array_equal(np.asarray(same), np.asarray(box))
    with pytest.raises(ValueError):
        paste_face(photo, aged, face.quad, "ellipse")


def test_colour_matching_brings_a_drifted_face_to_the_photo_and_keeps_its_texture(portrait):
    photo, (face,) = portrait
    a = np.asarray(face.image, float)
    drifted = Image.fromarray(np.uint8(np.clip(a * [1.15, 0.9, 0.75] + [30, 10, 0], 0, 255)))
    from skimage.color import rgb2lab

    m = np.asarray(landmark_mask(landmarks_in_face(face.landmarks, face.quad, 256), 256), float) / 255
    ring = ((m >= 0.5) & (m <= 0.98)).astype(float)
    matched = match_colour(drifted, face.image, ring)

    def ring_mean(img):
        return rgb2lab(np.asarray(img, float) / 255)[ring > 0].mean(axis=0)

    target = ring_mean(face.image)
    assert np.linalg.norm(ring_mean(drifted) - target) > 10  # a visible drift (delta E)
    assert np.linalg.norm(ring_mean(matched) - target) < 2
    lum = [rgb2lab(np.asarray(im, float) / 255)[..., 0].ravel() for im in (drifted, matched)]
    assert np.corrcoef(*lum)[0, 1] > 0.99  # the same face, only recoloured
    # the fast form (a 33^3 LUT, used for 1024 px faces) against the exact per-pixel map
    for face_in in (drifted, standin_like_face(3)):
        big = face_in.resize((512, 512), Image.BICUBIC)
        fast = np.asarray(match_colour(big, face.image, ring, exact=False), int)
        exact = np.asarray(match_colour(big, face.image, ring, exact=True), int)
        d = np.abs(fast - exact)
        assert d.max() <= 6 and d.mean() < 0.1, (d.max(), d.mean())


def _check_seams(photo, face):
    """Seam ratios of one face: the numbers, and the orderings that hold whatever the face."""
    r = {}
    r["identity box"] = _seam(photo, face, face.image, "box", colour_match=False)
    r["identity face"] = _seam(photo, face, face.image, "face")
    aged = standin_like_face(7)
    r["box"] = _seam(photo, face, aged, "box", colour_match=False)  # the earlier paste-back
    r["box+colour"] = _seam(photo, face, aged, "box")
    r["face"] = _seam(photo, face, aged, "face", colour_match=False)
    r["face+colour"] = _seam(photo, face, aged, "face")  # the default
    lm = landmarks_in_face(face.landmarks, face.quad, 256)
    hard = landmark_mask(lm, 256, feather=0.0)
    r["face+colour, hard edge"] = _seam(photo, face, aged, hard)
    # putting the same face back leaves no seam
    assert 0.9 < r["identity box"] < 1.1 and 0.9 < r["identity face"] < 1.1, r
    # colour matching and feathering each take edge energy off the border
    assert r["face+colour"] < r["face"] and r["box+colour"] < r["box"], r
    assert r["face+colour"] < r["face+colour, hard edge"], r
    # the default is below the earlier box paste
    assert r["face+colour"] < r["box"], r
    return r


def test_seam_on_the_sample_portrait(portrait):
    photo, (face,) = portrait
    r = _check_seams(photo, face)
    assert r["face+colour"] < 0.85 * r["box"] and r["face+colour"] < 1.2, r


def test_seam_on_a_group_photo(group):
    photo, faces = group
    assert len(faces) >= 4  # a real group photo: several faces found
    ratios = [_check_seams(photo, f) for f in faces[:4]]
    default, box = (np.mean([r[k] for r in ratios]) for k in ("face+colour", "box"))
    assert default < 0.85 * box and default < 1.2, ratios


def test_seam_band_follows_the_mask_border():
    m = np.zeros((100, 100))
    m[30:70, 30:70] = 1.0
    band = seam_band(m, 2.0)
    assert band[30, 50] and band[50, 30] and band[28, 50] and not band[50, 50] and not band[5, 5]
    assert seam_band(np.zeros((10, 10)), 2.0).sum() == 0
    with pytest.raises(ValueError):
        seam_ratio(Image.new("RGB", (10, 10)), Image.new("RGB", (10, 10)), np.zeros((10, 10)))
    assert box_mask(64).size == (64, 64)
