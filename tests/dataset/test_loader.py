"""Preparation in DataLoader workers: the same network input as the one-photo path, bad
inputs come back as statuses (never raise), order kept (no model; a few seconds)."""

from __future__ import annotations

import pytest

from sam_age.dataset.loader import PhotoDataset, make_loader
from sam_age.face.prepare import prepare_faces

from ..helpers.dataset import write_dataset

pytest.importorskip("dlib")


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_preparation_matches_the_pipeline(tmp_path, workers):
    expect = write_dataset(tmp_path)
    names = ["a.jpg", "e_truncated.jpg", "f_gradient.png", "b.jpg"]
    ds = PhotoDataset([tmp_path / n for n in names], keep_photo=True)
    batches = list(make_loader(ds, photos_per_batch=3, workers=workers))
    assert [len(b) for b in batches] == [3, 1]
    got = [p for b in batches for p in b]
    assert [p.index for p in got] == [0, 1, 2, 3]
    assert [p.status for p in got] == [expect[n] for n in names]
    assert "truncated" in got[1].reason and got[2].reason == "no face found"
    for p, name in ((got[0], "a.jpg"), (got[3], "b.jpg")):
        photo, faces = prepare_faces(tmp_path / name)
        assert p.n_faces == len(faces) == 1
        again = p.prepared_faces()[0]  # what the model gets, rebuilt in the main process
        assert again.image.tobytes() == faces[0].image.tobytes() and (again.quad == faces[0].quad).all()
        assert again.score == pytest.approx(faces[0].score) and (again.landmarks == faces[0].landmarks).all()
        assert p.photo_image().tobytes() == photo.tobytes()
