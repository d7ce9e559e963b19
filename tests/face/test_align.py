"""dlib detection, FFHQ alignment and paste-back on the astronaut portrait."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("dlib")

from sam_age.errors import NoFaceError  # noqa: E402
from sam_age.face import align_faces, detect_faces, face_quad, paste_face, rank_detections  # noqa: E402

from ..helpers.images import sample  # noqa: E402


@pytest.fixture(scope="module")
def faces():
    return align_faces(sample(), all_faces=True)


def test_astronaut_face_found_and_quad_sane(faces):
    best = faces[0]
    assert best.image.size == (256, 256) and best.image.mode == "RGB"
    q = best.quad
    assert q.shape == (4, 2) and q.dtype == np.float32
    # the face is in the upper middle of the photo (box about (175,76)-(265,166))
    centre = q.mean(axis=0)
    assert 190 < centre[0] < 260 and 80 < centre[1] < 140
    side = np.linalg.norm(q[3] - q[0])
    assert 120 < side < 260 and abs(side - np.linalg.norm(q[1] - q[0])) < 1e-3  # a square
    assert abs(np.dot(q[3] - q[0], q[1] - q[0])) < 1e-2 * side**2  # right angle
    # the quad is exactly what the landmarks give (no shrink at this size)
    np.testing.assert_allclose(q, face_quad(best.landmarks), atol=1e-3)


def test_highest_score_wins(faces):
    # at dlib's default threshold the astronaut photo also yields a weak false positive
    # (on the suit); the original keeps the *last* detection, we keep the best.
    assert len(faces) >= 2
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    best_only = detect_faces(sample())
    assert len(best_only) == 1 and best_only[0].score == pytest.approx(scores[0])
    assert rank_detections([(0, 0, 1, 1)] * 3, [0.1, 0.9, 0.5]) == [1]
    assert rank_detections([(0, 0, 1, 1)] * 3, [0.1, 0.9, 0.5], all_faces=True) == [1, 2, 0]


def test_no_face():
    with pytest.raises(NoFaceError, match="blank.png: no face"):
        align_faces(Image.new("RGB", (200, 200), (128, 128, 128)), name="blank.png")


def test_face_on_a_large_photo_is_found_and_shrunk():
    # 4x upscaled: detection runs on a downscaled copy, alignment shrinks first
    big = sample().resize((2048, 2048), Image.BICUBIC)
    face = align_faces(big)[0]
    small = align_faces(sample())[0]
    np.testing.assert_allclose(face.quad / 4.0, small.quad, atol=4.0)
    diff = np.abs(np.asarray(face.image, float) - np.asarray(small.image, float)).mean()
    assert diff < 12


def test_padding_when_face_near_edge():
    # crop so the face's quad leaves the photo: reflect padding must fill it smoothly
    img = sample().crop((150, 40, 420, 420))
    face = align_faces(img)[0]
    assert face.quad[:, 1].min() < 0 or face.quad[:, 0].min() < 0 or face.quad[:, 0].max() > img.width
    a = np.asarray(face.image, float)
    assert a.std() > 10 and (a.sum(axis=2) > 0).mean() > 0.99  # no black borders


def test_paste_back_changes_only_the_face(faces):
    photo = sample()
    aged = ImageOps.invert(faces[0].image)
    out = paste_face(photo, aged, faces[0].quad)
    assert out.size == photo.size and out.mode == "RGB"
    diff = np.abs(np.asarray(out, int) - np.asarray(photo, int)).sum(axis=2)
    ys, xs = np.nonzero(diff)
    q = faces[0].quad
    assert xs.min() >= q[:, 0].min() - 1 and xs.max() <= q[:, 0].max() + 1
    assert ys.min() >= q[:, 1].min() - 1 and ys.max() <= q[:, 1].max() + 1
    # the middle of the face is replaced (inverted), the outside untouched
    cx, cy = q.mean(axis=0).astype(int)
    assert diff[cy, cx] > 300
    assert diff[400:, :].sum() == 0 and diff[:, :100].sum() == 0


def test_paste_back_of_the_unchanged_face_is_nearly_identity(faces):
    photo = sample()
    big = faces[0].image.resize((1024, 1024), Image.LANCZOS)  # a 1024 px result pastes too
    out = paste_face(photo, big, faces[0].quad)
    assert np.abs(np.asarray(out, float) - np.asarray(photo, float)).mean() < 1.0
