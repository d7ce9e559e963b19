"""The demo in a real browser: Debian's headless Chromium, driven by Playwright, against
the Gradio server on 127.0.0.1 with the 256 px stand-in SAM.

A visitor uploads a file that is too big and one that is not an image (both explained in
the page), takes the sample portrait, sets the ages, runs, and gets the strip, the face
gallery, the animation and the pasted-back photo. The screenshot goes to the test's temp
folder; ``SAM_AGE_WRITE_DOCS=1`` also writes it to ``docs/web-demo.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.browser,
    # Gradio's queue calls pandas options that pandas 3 deprecates: not ours to fix.
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches past 127.0.0.1 (no updates, sync, QUIC or pings).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "web-demo.png"
RUN_TIMEOUT_MS = 300_000  # the stand-in model on a busy 2-core CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(web_pipeline, tmp_path_factory):
    from sam_age.web import build_app, launch

    app = build_app(web_pipeline, max_upload_mb=1, frames_per_age=1, workdir=tmp_path_factory.mktemp("web-server"))
    port = _free_port()
    launch(app, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_visitor_ages_the_sample_and_bad_uploads_are_explained(server, browser, tmp_path):
    from playwright.sync_api import expect

    too_big = tmp_path / "huge.png"
    too_big.write_bytes(os.urandom(2 * 1024 * 1024))  # over the 1 MB limit of this server
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture\n")

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="domcontentloaded")
    expect(page.locator("#run")).to_be_visible(timeout=60_000)
    file_input = page.locator("#photo input[type=file]")

    # Too big: Gradio's own upload route refuses it, and the page says so.
    file_input.set_input_files(str(too_big))
    expect(page.get_by_text("exceed the maximum allowed size")).to_be_visible(timeout=30_000)

    # Not an image: our reader's one-line reason, under the upload.
    file_input.set_input_files(str(notes))
    status = page.locator("#status")
    expect(status).to_contain_text("notes.png: not an image", timeout=60_000)
    page.locator("#run").click()  # running it anyway explains again; the server stays up
    expect(status).to_contain_text("Could not use this photo", timeout=60_000)

    # The sample, two ages, with the animation.
    page.locator("#sample").click()
    expect(page.locator("#preview img")).to_be_visible(timeout=60_000)
    expect(status).to_contain_text("astronaut.jpg", timeout=60_000)
    page.locator("#ages textarea").fill("20, 70")
    page.locator("#animate input[type=checkbox]").check()
    page.locator("#run").click()
    expect(status).to_contain_text("Done: 1 face x 2 ages", timeout=RUN_TIMEOUT_MS)

    # The slider's quick answer: one face, one age (the slider's default, 60).
    page.locator("#quick").click()
    expect(status).to_contain_text("Age 60: done", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#quick-result img")).to_be_visible(timeout=30_000)
    expect(page.locator("#quick-result [data-testid=status-tracker]")).to_have_class(
        re.compile(r"\bhide\b"), timeout=30_000
    )

    for selector in ("#strip img", "#gif img", "#pasted img"):
        expect(page.locator(selector).first).to_be_visible(timeout=30_000)
    expect(page.locator("#face-1 img")).to_have_count(2, timeout=30_000)  # one tile per age
    widths = page.eval_on_selector_all(
        "#quick-result img, #strip img, #face-1 img, #gif img, #pasted img",
        "els => els.map(e => e.complete ? e.naturalWidth : 0)",
    )
    assert len(widths) >= 6 and all(w > 0 for w in widths), widths
    strip_width = page.eval_on_selector("#strip img", "e => e.naturalWidth")
    assert strip_width == 3 * 256  # input + two ages

    shot = tmp_path / "web-demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SAM_AGE_WRITE_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)

    # Still serving after the bad uploads.
    with urllib.request.urlopen(server, timeout=30) as r:
        assert r.status == 200
    page.close()


def test_visitor_ages_a_short_clip_in_the_video_tab(server, browser, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from playwright.sync_api import expect

    from ..helpers.clips import sample_clip

    clip = sample_clip(tmp_path / "wave.mp4", n=3)
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Video").click()
    expect(page.locator("#video-limit")).to_contain_text("up to 10 s", timeout=60_000)
    status = page.locator("#video-status")
    file_input = page.locator("#video-file input[type=file]")

    file_input.set_input_files(str(notes))  # not a video: one line in the page
    expect(page.locator("#video-file").get_by_role("cell", name="notes.mp4")).to_be_visible(timeout=60_000)
    page.locator("#video-run").click()
    expect(status).to_contain_text("notes.mp4: not a video", timeout=60_000)

    page.locator("#video-file button[aria-label='Clear']").first.click()
    file_input.set_input_files(str(clip))
    expect(page.locator("#video-file").get_by_role("cell", name="wave.mp4")).to_be_visible(timeout=60_000)
    page.locator("#video-run").click()
    expect(status).to_contain_text("Done: 1 person aged to 70 over 3 frames", timeout=RUN_TIMEOUT_MS)
    video = page.locator("#video-result video")
    expect(video).to_be_visible(timeout=30_000)
    src = video.get_attribute("src")
    assert src and "wave_age070.mp4" in src
    page.close()
