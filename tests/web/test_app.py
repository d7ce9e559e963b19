"""The demo's handlers, called directly (no server): good photos age, bad ones explain."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sam_age.web import MAX_AGES, WebDemo, build_app, parse_ages_text

from ..helpers.clips import sample_clip


@pytest.fixture(scope="module")
def demo(web_pipeline, tmp_path_factory):
    return WebDemo(web_pipeline, workdir=tmp_path_factory.mktemp("web"), frames_per_age=1)


def test_build_app_is_a_queued_blocks_page(web_pipeline, tmp_path):
    import gradio as gr

    app = build_app(web_pipeline, workdir=tmp_path, max_upload_mb=3)
    assert isinstance(app, gr.Blocks)
    assert isinstance(app.sam_age, WebDemo) and app.sam_age.pipeline is web_pipeline
    assert app.sam_age.max_upload_bytes == 3 * 2**20
    assert app._queue is not None  # queued: concurrent visitors wait their turn
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"photo", "sample", "age", "ages", "run", "strip", "face-1", "gif", "mp4", "pasted", "status"} <= ids


def test_sample_portrait_ages_into_strip_gallery_animation_and_photo(demo):
    sample = demo.sample()
    assert Path(sample).is_relative_to(demo.workdir) and Path(sample).stat().st_size > 0
    preview, message = demo.preview(sample)
    assert isinstance(preview, Image.Image) and "astronaut" in message

    out = demo.age(sample, "20, 70", all_faces=False, paste_back=True, animate=True)
    assert out.ok, out.message
    assert out.message.startswith("Done: 1 face x 2 ages")
    assert out.strip.size == (3 * 256, 256)  # input + two ages
    assert [c for _, c in out.faces[0]] == ["face 1, age 20", "face 1, age 70"]
    assert all(im.size == (256, 256) for im, _ in out.faces[0])
    gif = Image.open(out.gif)
    assert gif.format == "GIF" and gif.n_frames >= 2
    assert out.mp4 is None or Path(out.mp4).stat().st_size > 0
    assert out.pasted.size == Image.open(sample).size  # the whole photo, aged face put back


def test_quick_result_is_one_face_at_the_slider_age(demo):
    image, message = demo.quick(demo.sample(), 45)
    assert image.size == (256, 256) and "45" in message


def test_slider_move_reuses_the_uploads_faces_and_encoding(demo, monkeypatch):
    """A slider move on the same upload: no detection, no pretrained encoder -- one age
    encoder and one generator call."""
    import sam_age.pipeline as pipeline

    model = demo.pipeline.model
    demo.quick(demo.sample(), 30)  # the upload, first seen
    calls = {"detect": 0, "pretrained": 0, "age": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(pipeline, "prepare_faces", counting("detect", pipeline.prepare_faces))
    monkeypatch.setattr(model.pretrained_encoder, "forward", counting("pretrained", model.pretrained_encoder.forward))
    monkeypatch.setattr(model.encoder, "forward", counting("age", model.encoder.forward))
    for age in (40, 55, 70):
        image, message = demo.quick(demo.sample(), age)
        assert image is not None and f"{age}" in message
    assert calls == {"detect": 0, "pretrained": 0, "age": 3}


@pytest.mark.parametrize(
    "name, reason",
    [
        ("notes.png", "not an image"),
        ("bomb.png", "image too large"),
    ],
)
def test_unreadable_uploads_explain_themselves(demo, bad_uploads, name, reason):
    preview, message = demo.preview(str(bad_uploads / name))
    assert preview is None
    assert name in message and reason in message and "Traceback" not in message
    out = demo.age(str(bad_uploads / name), "20, 70")
    assert not out.ok and out.strip is None and reason in out.message
    image, quick_message = demo.quick(str(bad_uploads / name), 30)
    assert image is None and reason in quick_message


def test_photo_without_a_face_explains_itself(demo, bad_uploads):
    out = demo.age(str(bad_uploads / "grey.png"), "30")
    assert not out.ok and "grey.png" in out.message and "face" in out.message.lower()


def test_too_big_upload_and_bad_ages_explain_themselves(web_pipeline, demo, tmp_path):
    small = WebDemo(web_pipeline, workdir=tmp_path, max_upload_mb=0.001)
    out = small.age(demo.sample(), "30")
    assert not out.ok and "file too large" in out.message
    assert "upload a photo first" in demo.age(None, "30").message
    assert "ages" in demo.age(demo.sample(), "ten, twenty").message
    assert "0..100" in demo.age(demo.sample(), "150").message
    with pytest.raises(Exception, match="at most"):
        parse_ages_text("0:100:1")
    assert len(parse_ages_text("0:100:5")) == MAX_AGES


def test_serve_refuses_bad_flags_before_loading_the_model(tmp_path, capsys):
    from sam_age.cli.main import main

    missing = str(tmp_path / "missing.pt")
    assert main(["serve", "--checkpoint", missing, "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", missing, "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb" in capsys.readouterr().err
    import socket

    with socket.socket() as s:  # a free port: the busy-port check passes, the checkpoint is next
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    assert main(["serve", "--checkpoint", missing, "--port", port]) == 2  # no such checkpoint: exit 2, one line
    err = capsys.readouterr().err
    assert "missing.pt" in err and "Traceback" not in err


class _FixedEstimator:
    def __init__(self, age):
        self.age = age

    def estimate_aligned(self, faces):
        return [self.age] * len(faces)


def test_relative_age_controls_show_the_estimate(web_pipeline, demo, monkeypatch):
    monkeypatch.setattr(web_pipeline, "age_predictor", _FixedEstimator(40.0))
    image, message = demo.quick_relative(demo.sample(), 20)
    assert image.size == (256, 256)
    assert message.startswith("+20 years: done.") and "Estimated age 40.0." in message
    out = demo.age(demo.sample(), "+70, 30", paste_back=False)  # 110: clamped, and said so
    assert out.ok, out.message
    assert "Estimated age 40.0." in out.message and "+70 -> 110 clamped to 100" in out.message
    assert [c for _, c in out.faces[0]] == ["face 1, age 100 (+70)", "face 1, age 30"]
    assert parse_ages_text("-10:+10:10") == parse_ages_text("-10, +0, +10")


def test_page_has_the_relative_controls(web_pipeline, tmp_path):
    app = build_app(web_pipeline, workdir=tmp_path)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"age", "years", "quick", "quick-relative"} <= ids


# -- the Video tab ---------------------------------------------------------------------------
def test_video_tab_ages_a_short_clip_and_refuses_long_or_bad_ones(web_pipeline, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("dlib")
    from sam_age.video import probe_video

    demo = WebDemo(web_pipeline, workdir=tmp_path / "web", max_video_seconds=2)
    clip = sample_clip(tmp_path / "hello.mp4", n=3)
    path, message = demo.video(str(clip), 60)
    assert path and "Done: 1 person aged to 60 over 3 frames" in message, message
    out = probe_video(path)
    assert Path(path).name == "hello_age060.mp4" and out.frames == 3 and out.audio
    long_clip = sample_clip(tmp_path / "long.mp4", n=3, seconds_per_frame=1)  # 3 s > 2 s
    path, message = demo.video(str(long_clip), 60)
    assert path is None and "3.0 s long" in message and "up to 2 s" in message
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    path, message = demo.video(str(notes), 60)
    assert path is None and "Could not use this video" in message and "notes.mp4: not a video" in message
    path, message = demo.video(None, 60)
    assert path is None and "upload a video clip first" in message


def test_report_checkbox_captions_each_image_with_what_it_reached(web_pipeline, demo, tmp_path, standin):
    """The demo's report box (issue 25): each image's caption adds "looks A for B asked;
    identity X", the numbers of the Python API's ``report=True``; off, the captions stay bare."""
    from sam_age.identity import IdentityNet

    assert "report" in {getattr(b, "elem_id", None) for b in build_app(web_pipeline, workdir=tmp_path).blocks.values()}
    old_predictor, old_identity = web_pipeline.age_predictor, web_pipeline.identity
    web_pipeline.age_predictor = standin("dex_age_classifier")
    web_pipeline.identity = IdentityNet.from_weights(standin("model_ir_se50"), "ir_se50")
    try:
        out = demo.age(demo.sample(), "30", paste_back=False, report=True)
        assert out.ok, out.message
        ((_, caption),) = out.faces[0]
        ref = web_pipeline(demo.sample(), [30], report=True).faces[0].report[0]
        assert caption == f"face 1, age 30; {ref.caption}" and "asked; identity" in caption
        bare = demo.age(demo.sample(), "30", paste_back=False)
        assert [c for _, c in bare.faces[0]] == ["face 1, age 30"]
    finally:
        web_pipeline.age_predictor, web_pipeline.identity = old_predictor, old_identity
