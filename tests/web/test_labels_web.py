"""The demo's strip and animation carry each tile's / frame's age (issue 26 item 6), drawn
by :mod:`sam_age.render` as ``sam-age age`` draws them; the galleries stay bare."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sam_age.render import label_band, make_strip
from sam_age.web import WebDemo

pytest.importorskip("dlib")


def _pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(int)


def test_strip_and_animation_are_labelled_only_in_the_band(web_pipeline, tmp_path):
    on = WebDemo(web_pipeline, workdir=tmp_path / "on", frames_per_age=1)
    off = WebDemo(web_pipeline, workdir=tmp_path / "off", frames_per_age=1, labels=False)
    sample = on.sample()
    a_out = on.age(sample, "20, 70", paste_back=False, animate=True)
    b_out = off.age(sample, "20, 70", paste_back=False, animate=True)
    assert a_out.ok and b_out.ok, (a_out.message, b_out.message)
    a, b = _pixels(a_out.strip), _pixels(b_out.strip)
    assert a.shape == b.shape == (256, 3 * 256, 3)
    band = label_band(256)
    assert np.array_equal(a[: 256 - band], b[: 256 - band])  # above the band: untouched
    assert np.abs(a[256 - band :] - b[256 - band :]).mean() > 30.0
    for t in range(3):  # every tile has its label: white text on the dark band
        tile = a[256 - band :, t * 256 : (t + 1) * 256]
        assert (tile.min(axis=2) > 200).sum() > 20 and (tile.max(axis=2) < 40).sum() > 1000, t
    # labels off: the strip the unlabelled demo drew (the input tile, then the gallery images)
    aligned = Image.fromarray(b[:, :256].astype(np.uint8))
    bare = make_strip(aligned, [im for im, _ in b_out.faces[0]])
    assert np.array_equal(_pixels(bare), b)
    # the galleries (one download per age) stay bare either way
    for (x, _), (y, _) in zip(a_out.faces[0], b_out.faces[0]):
        assert np.array_equal(_pixels(x), _pixels(y))
    # the animation: 20 -> 70, each frame labelled in its band only
    with Image.open(a_out.gif) as g_on, Image.open(b_out.gif) as g_off:
        assert g_on.n_frames == g_off.n_frames == 2
        for i in range(2):
            g_on.seek(i)
            g_off.seek(i)
            x, y = _pixels(g_on), _pixels(g_off)
            assert (x[256 - band :].min(axis=2) > 200).sum() > 20  # white text
            assert (y[256 - band :].min(axis=2) > 200).sum() < 20  # none without labels
            # above the band only the GIF palette's rounding may differ
            assert np.abs(x[: 256 - band] - y[: 256 - band]).mean() < 8.0
