"""A real server on 127.0.0.1 (uvicorn in a thread) around the 256 px stand-in SAM."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(server, timeout: float = 60.0):
    """Serve ``server`` (a :class:`sam_age.api.SamAgeServer`) on a free loopback port:
    yields the base URL; stops uvicorn and the model's worker afterwards."""
    import uvicorn

    port = free_port()
    uv = uvicorn.Server(
        uvicorn.Config(
            server.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            access_log=False,
        )
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(15)
        server.close()


@pytest.fixture(scope="session")
def api_pipeline(small_pipeline):
    pytest.importorskip("fastapi")
    pytest.importorskip("prometheus_client")
    return small_pipeline


@pytest.fixture(scope="session")
def portrait_bytes():
    from sam_age.pipeline import sample_path

    return sample_path().read_bytes()


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory):
    """Uploads that are not usable portraits: (name, bytes)."""
    import io

    from PIL import Image

    out = {"notes.png": b"these are my notes, not a picture\n"}
    buf = io.BytesIO()
    Image.new("RGB", (160, 160), (128, 128, 128)).save(buf, "PNG")
    out["grey.png"] = buf.getvalue()  # readable, no face
    buf = io.BytesIO()
    Image.new("1", (10001, 10001)).save(buf, "PNG", optimize=True)
    out["bomb.png"] = buf.getvalue()  # a tiny file that claims 100 MP
    return out
