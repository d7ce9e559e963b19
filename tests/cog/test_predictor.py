"""The Cog predictor through the `cog` package's own Python API (no Docker): cog loads
predict.py:Predictor, reads its inputs, fills the defaults, then setup + predict run on the
256 px stand-in SAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def predictor(small_sam_path):
    pytest.importorskip("cog")
    from cog.predictor import load_predictor_from_ref

    mp = pytest.MonkeyPatch()
    mp.setenv("SAM_AGE_CHECKPOINT", str(small_sam_path))
    mp.syspath_prepend(str(REPO))
    with pytest.warns(DeprecationWarning):  # cog 0.23 prefers `Runner`; Replicate still runs Predictor
        p = load_predictor_from_ref(str(REPO / "predict.py") + ":Predictor")
    p.setup()
    yield p
    mp.undo()


def _inputs(values):
    from cog._inspector import check_input, create_predictor

    info = create_predictor("predict", "Predictor")
    assert {"image", "target_age", "paste_back"} <= set(info.inputs)
    return check_input(info.inputs, values)


def test_cog_inputs_match_the_official_and_default_is_the_gif(predictor, monkeypatch):
    import sys

    from sam_age.pipeline import sample_path

    module = sys.modules["predict"]
    assert module.DEFAULT_GIF_AGES == "0:100:10"  # the official default: 0..100
    monkeypatch.setattr(module, "DEFAULT_GIF_AGES", "0:100:50")  # fewer frames for a 2-core test
    monkeypatch.setattr(module, "GIF_FRAMES_PER_AGE", 2)
    kwargs = _inputs({"image": str(sample_path())})
    assert kwargs["target_age"] == "default" and kwargs["paste_back"] is False
    out = predictor.predict(**kwargs)
    gif = Image.open(out)
    assert gif.format == "GIF" and gif.n_frames == 8  # 0, 25, 50, 75, 100 and back: 5 + 3


def test_cog_one_age_equals_the_pipeline_and_paste_back(predictor):
    from sam_age.pipeline import sample_path

    out = predictor.predict(**_inputs({"image": str(sample_path()), "target_age": "70"}))
    want = predictor.pipeline(str(sample_path()), [70]).images[0]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(want))
    pasted = predictor.predict(**_inputs({"image": str(sample_path()), "target_age": "70", "paste_back": True}))
    assert Image.open(pasted).size == Image.open(sample_path()).size


def test_cog_bad_inputs_say_what_is_wrong(predictor, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.png: not an image"):
        predictor.predict(**_inputs({"image": str(notes), "target_age": "30"}))
    from sam_age.pipeline import sample_path

    with pytest.raises(ValueError, match="one age"):
        predictor.predict(**_inputs({"image": str(sample_path()), "target_age": "30, 40"}))
