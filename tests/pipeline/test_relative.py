"""Relative ages and the age estimate in the pipeline: DEX as training uses it, loaded only
when needed, each face aged from its own estimate, clamping reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_age.ages import RelativeAge
from sam_age.errors import UsageError
from sam_age.images import to_tensor

from ..helpers.images import SAMPLE, group_photo_path

pytest.importorskip("dlib")


class FixedEstimator:
    """Stands in for DEX: says each face is the given age."""

    def __init__(self, *ages):
        self.ages = list(ages)
        self.calls = 0

    def estimate_aligned(self, faces):
        self.calls += 1
        return [self.ages[i % len(self.ages)] for i in range(len(faces))]


@pytest.fixture(scope="module")
def pipe(small_pipeline):
    return small_pipeline  # the session's one 256 px pipeline (tests/conftest.py)


@pytest.fixture
def recorded(pipe, monkeypatch):
    """The engine's calls (faces, ages) without running SAM: flat images per age."""
    calls = []

    def fake_age_aligned(faces, ages, size=256, randomize_noise=False, generator=None, progress=None):
        calls.append((len(faces), list(ages)))
        n, a = len(faces), len(ages)
        images = torch.stack([torch.full((3, size, size), (age / 50.0) - 1.0) for age in ages])
        return images[None].expand(n, a, 3, size, size).clone(), torch.zeros(n, a, pipe.model.n_styles, 512)

    monkeypatch.setattr(pipe, "age_aligned", fake_age_aligned)
    old = pipe.age_predictor
    yield calls
    pipe.age_predictor = old


def test_estimator_is_trainings_dex(standin):
    from sam_age.estimate import AgeEstimator
    from sam_age.face.prepare import prepare_faces
    from sam_age.losses import AgingLoss

    dex = standin("dex_age_classifier")
    photo, faces = prepare_faces(SAMPLE, all_faces=True)
    loss = AgingLoss(dex)  # the training loss's network (loaded once for both)
    with torch.no_grad():
        expected = loss.predict_ages(torch.stack([to_tensor(f.image) for f in faces]))
    est = AgeEstimator.from_pretrained(loss.age_net, device="cpu")
    ages = est.estimate_aligned([f.image for f in faces])
    np.testing.assert_allclose(ages, expected.numpy(), rtol=1e-5)
    result = est(SAMPLE)  # a photo: the best face
    assert result.age == pytest.approx(ages[0], rel=1e-5) and result.faces[0].quad is not None
    assert 0.0 <= result.age <= 100.0


def test_relative_ages_resolve_per_face_and_clamp(pipe, recorded):
    pipe.age_predictor = FixedEstimator(90.0)
    result = pipe(str(SAMPLE), ["+5", "-10", 30, "+20"])
    assert recorded == [(1, [95.0, 80.0, 30.0, 100.0])]
    assert result.ages == [95.0, 80.0, 30.0, 100.0] and result.estimated_age == 90.0
    assert result.requested == [RelativeAge(5.0), RelativeAge(-10.0), 30.0, RelativeAge(20.0)]
    face = result.faces[0]
    assert [r.clamped for r in face.resolved] == [False, False, False, True]
    assert face.resolved[3].asked == 110.0
    assert result.notes == ["estimated age 90.0: +20 -> 110 clamped to 100 (SAM ages within 0..100)"]
    assert len(result.images) == 4


def test_relative_ages_clamped_to_the_same_age_still_get_one_image_each(pipe, recorded):
    pipe.age_predictor = FixedEstimator(5.0)
    result = pipe(str(SAMPLE), "-10,-20,+0")
    assert recorded == [(1, [0.0, 0.0, 5.0])] and len(result.images) == 3
    assert result.notes == [
        "estimated age 5.0: -10 -> -5 clamped to 0, -20 -> -15 clamped to 0 (SAM ages within 0..100)"
    ]


def test_faces_with_different_estimates_are_aged_apart_and_pasted_together(pipe, recorded):
    path = group_photo_path()
    if path is None:
        pytest.skip("no group photo (pip install --no-deps insightface==2.1)")
    pipe.age_predictor = FixedEstimator(20.0, 60.0)
    result = pipe(str(path), "+10", all_faces=True, paste_back=True)
    n = len(result.faces)
    assert n >= 4
    assert [f.estimated_age for f in result.faces] == [20.0 if i % 2 == 0 else 60.0 for i in range(n)]
    assert [f.ages for f in result.faces] == [[30.0] if i % 2 == 0 else [70.0] for i in range(n)]
    assert sorted(recorded) == sorted([((n + 1) // 2, [30.0]), (n // 2, [70.0])])  # one batch per age list
    assert len(result.pasted) == 1 and result.pasted[0].size == result.source.size
    assert result.notes == []


def test_absolute_ages_never_load_the_age_predictor(pipe, recorded):
    pipe.age_predictor = "/nonexistent/dex.pth"  # would fail if it were ever loaded
    for ages, expected in ((30, [30.0]), ("0:100:50", [0.0, 50.0, 100.0]), ([10, "20"], [10.0, 20.0])):
        result = pipe(str(SAMPLE), ages)
        assert result.ages == expected and result.estimated_age is None and result.notes == []
    assert pipe._estimator is None
    with pytest.raises(UsageError, match="negative"):
        pipe(str(SAMPLE), -10)
    with pytest.raises(Exception, match="dex.pth"):  # asked for: loaded then, and it is missing
        pipe(str(SAMPLE), "+10")


def test_mask_choice_is_checked(pipe, recorded):
    with pytest.raises(UsageError, match="mask"):
        pipe(str(SAMPLE), 30, paste_back=True, mask="ellipse")
