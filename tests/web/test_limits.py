"""The demo's bounds when served (issue 22, item 13): faces and pixels per photo, the shared
bounded queue ("busy, try again" at once), and the per-request job folders removed."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from PIL import Image

from sam_age.web import WebDemo, build_app


def test_too_many_pixels_are_refused_from_the_header(web_pipeline, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), "white").save(big)  # 6 MP
    demo = WebDemo(web_pipeline, workdir=tmp_path / "web", max_pixels=5_000_000)
    out = demo.age(str(big), "30")
    assert not out.ok and "big.png: image too large (3000x2000 pixels" in out.message and "5 megapixels" in out.message


def test_all_faces_is_capped(web_pipeline, tmp_path):
    from sam_age.pipeline import sample_path

    src = Image.open(sample_path()).convert("RGB")
    two = Image.new("RGB", (src.width * 2, src.height))
    two.paste(src, (0, 0))
    two.paste(src, (src.width, 0))
    path = tmp_path / "two.png"
    two.save(path)
    demo = WebDemo(web_pipeline, workdir=tmp_path / "web", max_faces=1)
    out = demo.age(str(path), "30", all_faces=True, paste_back=False)
    assert out.ok, out.message
    found = re.search(r"\((\d+) faces found; this server ages the best 1\.\)", out.message)
    assert len(out.faces) == 1 and found and int(found.group(1)) >= 2, out.message


def test_a_full_queue_says_busy_at_once(web_pipeline, tmp_path):
    from sam_age.api import ModelQueue

    queue = ModelQueue(web_pipeline, max_queue=1)
    release = threading.Event()
    try:
        queue.call(release.wait)  # the worker is busy with this one
        while queue.depth:  # (once it has taken it)
            time.sleep(0.01)
        queue.call(lambda: None)  # and one waits: the queue is full
        demo = WebDemo(web_pipeline, workdir=tmp_path / "web", model_slot=queue.slot)
        image, message = demo.quick(demo.sample(), 40)
        assert image is None and "busy" in message and "try again" in message
    finally:
        release.set()
        queue.close()


def test_job_folders_go_once_gradio_has_the_files(web_pipeline, tmp_path):
    demo = WebDemo(web_pipeline, workdir=tmp_path / "web", frames_per_age=1)
    out = demo.age(demo.sample(), "20, 70", animate=True)
    assert out.ok and Path(out.gif).exists()
    job = demo.job_of(out.gif)
    assert job and Path(job).parent == demo.workdir
    demo.clean_jobs(job)
    assert not Path(job).exists() and demo.job_of(out.gif) is None
    assert demo.job_of(demo.sample()) is None  # the sample copy is no job: kept
    # The page removes them in each event's .then, and Gradio's cache is cleaned.
    app = build_app(web_pipeline, workdir=tmp_path / "page")
    assert app.delete_cache == (60, 600)
    names = [getattr(fn.fn, "__name__", "") for fn in app.fns.values()]
    assert names.count("clean_jobs") == 2
