"""The strip a request serves is drawn once (one image, each tile drawn straight into it)
and encoded once (into the marked file the page serves; Gradio passes a file path on
unchanged)."""

from __future__ import annotations

import pytest
from PIL import Image

from sam_age.web import build_app

pytest.importorskip("dlib")


def test_the_strip_is_encoded_once_per_request(web_pipeline, tmp_path, monkeypatch):
    """The page's Age event, called as Gradio calls it: of every image encoded for the
    answer, the strip (768 x 256) is encoded once, into the marked file the page serves."""
    import sam_age.render as render

    app = build_app(web_pipeline, workdir=tmp_path / "web", frames_per_age=1)
    (on_age,) = [f.fn for f in app.fns.values() if f.api_name == "age"]
    encoded = []
    encode = render.encode_image

    def counting(img, *args, **kwargs):
        encoded.append(img.size)
        return encode(img, *args, **kwargs)

    monkeypatch.setattr(render, "encode_image", counting)
    result = on_age(app.sam_age.sample(), "20, 70", False, False, False, False)
    message, strip_file = result[0], result[1]
    assert message.startswith("Done"), message
    assert Image.open(strip_file).size == (3 * 256, 256)
    assert encoded.count((3 * 256, 256)) == 1, encoded
    assert encoded.count((256, 256)) == 2  # the gallery's two images, once each
