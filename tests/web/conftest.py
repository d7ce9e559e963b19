"""One pipeline (the 256 px stand-in SAM) for every web test: loading is the slow part."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def web_pipeline(small_pipeline):
    pytest.importorskip("gradio", reason="the web demo needs gradio (pip install 'sam-age[web]')")
    return small_pipeline


@pytest.fixture(scope="session")
def bad_uploads(tmp_path_factory):
    """Files a visitor might upload that are not usable portraits."""
    from PIL import Image

    d = tmp_path_factory.mktemp("bad-uploads")
    (d / "notes.png").write_text("these are my notes, not a picture\n")
    Image.new("RGB", (160, 160), (128, 128, 128)).save(d / "grey.png")  # readable, no face
    # A tiny file that claims 10001 x 10001 pixels: more than the reader's 100 MP limit.
    Image.new("1", (10001, 10001)).save(d / "bomb.png", optimize=True)
    return d
