"""The web demo's downloads say they were edited by AI: the page gets marked files (a PIL
image handed to Gradio would be re-encoded without its metadata)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam_age.marks import COMPOSITE, GENERATED, read_marks
from sam_age.web import WebDemo

pytest.importorskip("dlib")


def test_served_files_are_marked_and_gradio_passes_them_on(web_pipeline, tmp_path):
    import gradio as gr

    demo = WebDemo(web_pipeline, workdir=tmp_path / "web")
    sample = demo.sample()
    out = demo.age(sample, "20, 70", paste_back=True, animate=True)
    assert out.ok, out.message
    strip, faces, pasted = demo.served_outputs(out, sample)
    rec = read_marks(strip)
    assert rec["digital_source_type"] == GENERATED and rec["xmp"]["samage:AgeRequested"] == "20,70"
    assert [read_marks(p)["xmp"]["samage:AgeRequested"] for p, _ in faces[0]] == ["20", "70"]
    assert [c for _, c in faces[0]] == ["face 1, age 20", "face 1, age 70"]
    rec = read_marks(pasted)
    assert rec["digital_source_type"] == COMPOSITE and rec["xmp"]["samage:AgeRequested"] == "70"
    assert read_marks(out.gif)["digital_source_type"] == GENERATED
    if out.mp4:
        assert read_marks(out.mp4)["digital_source_type"] == GENERATED
    # what Gradio serves for a file path is that file, bytes unchanged (a PIL image: re-encoded)
    served = gr.Image(type="pil").postprocess(pasted)
    assert Path(served.path).read_bytes() == Path(pasted).read_bytes()
    quick = demo.served(demo.quick(sample, 45)[0], GENERATED, "45", sample)
    assert read_marks(quick)["xmp"]["samage:AgeRequested"] == "45"


def test_served_files_unmarked_with_no_mark_and_bounded(web_pipeline, tmp_path):
    from PIL import Image

    demo = WebDemo(web_pipeline, workdir=tmp_path / "web", mark=None)
    demo.SERVED_KEPT = 3
    paths = [demo.served(Image.new("RGB", (8, 8), (i, 0, 0))) for i in range(5)]
    assert not read_marks(paths[-1])["marked"]
    assert len(list((tmp_path / "web" / "served").glob("*.png"))) == 3


def test_what_a_visitor_downloads_is_marked(web_pipeline, tmp_path):
    """The page on loopback, driven through gradio_client: the files it hands out."""
    import socket

    client_mod = pytest.importorskip("gradio_client")
    from sam_age.pipeline import sample_path
    from sam_age.web import build_app, launch

    app = build_app(web_pipeline, max_upload_mb=5, frames_per_age=1, workdir=tmp_path / "web")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(app, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        client = client_mod.Client(
            f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "downloads")
        )
        photo = client_mod.handle_file(str(sample_path()))
        result = client.predict(photo, "20, 70", False, True, False, False, api_name="/age")
        message, strip, gallery, pasted = result[0], result[1], result[2], result[-1]
        assert message.startswith("Done"), message
        assert read_marks(strip)["xmp"]["samage:AgeRequested"] == "20,70"
        paths = [item["image"] for item in gallery["value"]]  # an update: {"value": [{"image", "caption"}]}
        assert [read_marks(p)["digital_source_type"] for p in paths] == [GENERATED] * 2, gallery
        assert read_marks(pasted)["digital_source_type"] == COMPOSITE
        quick, _ = client.predict(photo, 45, api_name="/quick")
        assert read_marks(quick)["xmp"]["samage:AgeRequested"] == "45"
    finally:
        app.close()
