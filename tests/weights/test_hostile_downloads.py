"""Downloads are hostile until checked (issue 22, item 6): a look-alike never takes a
registry name, plain http only where the user asked for it, no https -> http redirect,
and an answer without a Content-Length stops at the expected size."""

from __future__ import annotations

import dataclasses
import io
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from sam_age.errors import WeightsUnavailableError
from sam_age.weights import registry, store
from sam_age.weights.download import RefusedError, _SafeRedirects, check_url

from ..helpers.server import HubServer, LoopbackServer

REV = "1234567890abcdef1234567890abcdef12345678"


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# the look-alike: a DEX-shaped dict of tiny tensors, about 1.5 KB
LOOKALIKE_DEX = _bytes({"state_dict": {"conv1_1.weight": torch.zeros(2, 3), "fc8-101.bias": torch.zeros(3)}})
# right keys and shapes, but every tensor a view of one float (stride 0): still a few KB
STRIDED_DEX = _bytes(
    {"state_dict": {k: torch.zeros(1).expand(*shape) for (_, k), shape in registry.get("dex_age").layout}}
)


def _entry(monkeypatch, name, *sources):
    entry = dataclasses.replace(registry.get(name), sources=tuple(sources))
    monkeypatch.setitem(registry._BY_NAME, name, entry)
    return entry


@pytest.mark.parametrize(
    "payload, reason",
    [
        (LOOKALIKE_DEX, "not a DEX age classifier: state_dict/conv1_1.weight has shape [2, 3]"),
        (STRIDED_DEX, "not stored whole"),
    ],
)
def test_a_lookalike_never_becomes_dex_age(home, monkeypatch, payload, reason):
    assert len(payload) < 4000
    with LoopbackServer(payload) as server:
        monkeypatch.setenv("SAM_AGE_URL_DEX_AGE", server.url("/file.bin"))
        with pytest.raises(WeightsUnavailableError, match=re.escape(reason)) as info:
            store.resolve_weights("dex_age", progress=False)
    assert len(info.value.reason.splitlines()) <= 12  # the short block of issue 26
    assert not (home / "dex_age_classifier.pth").exists()
    assert not [p for p in home.iterdir() if p.name.startswith("dex")]


def test_a_lookalike_from_a_hub_mirror_is_refused_too(home, monkeypatch):
    with HubServer({"owner/mirror/w.pt": LOOKALIKE_DEX}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        _entry(monkeypatch, "dex_age", registry.hub("owner/mirror", "w.pt", REV))
        with pytest.raises(WeightsUnavailableError, match="not a DEX age classifier"):
            store.fetch("dex_age", progress=False, load=False)
    assert not (home / "dex_age_classifier.pth").exists()


def test_the_real_layout_is_accepted(home, monkeypatch, standin):
    real = standin("model_ir_se50")
    with LoopbackServer(real.read_bytes()) as server:
        monkeypatch.setenv("SAM_AGE_URL_IR_SE50", server.url("/file.bin"))
        path = store.resolve_weights("ir_se50", progress=False)
    assert path == home / "model_ir_se50.pth" and path.stat().st_size == real.stat().st_size


def test_plain_http_only_where_the_user_gave_it():
    check_url("https://drive.google.com/uc?id=x")
    check_url("http://127.0.0.1:8080/x")  # loopback: a local mirror
    check_url("http://mirror.example/w.pt", user_url="http://mirror.example/w.pt")
    with pytest.raises(RefusedError, match="refusing plain http"):
        check_url("http://mirror.example/w.pt")
    with pytest.raises(RefusedError, match="refusing plain http"):
        check_url("http://mirror.example/other.pt", user_url="http://mirror.example/w.pt")
    with pytest.raises(RefusedError, match="from https to plain http"):
        check_url("http://127.0.0.1/w.pt", previous="https://drive.google.com/uc?id=x")
    with pytest.raises(RefusedError, match="only https"):
        check_url("ftp://mirror.example/w.pt")


def test_a_redirect_from_https_to_http_is_refused():
    handler = _SafeRedirects(user_url=None)
    req = urllib.request.Request("https://drive.google.com/uc?id=x")
    with pytest.raises(RefusedError, match="from https to plain http"):
        handler.redirect_request(req, None, 302, "Found", {}, "http://evil.example/w.pt")
    ok = handler.redirect_request(req, None, 302, "Found", {}, "https://drive.usercontent.google.com/x")
    assert ok.full_url == "https://drive.usercontent.google.com/x"


def test_a_registry_http_source_is_refused_before_any_request(home, monkeypatch):
    _entry(monkeypatch, "dex_age", registry.url("http://weights.example/dex.pth"))
    with pytest.raises(WeightsUnavailableError, match="refusing plain http"):
        store.fetch("dex_age", progress=False, load=False)


def test_a_redirect_to_a_plain_http_host_is_refused(home, monkeypatch):
    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://weights.example/dex.pth")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SAM_AGE_URL_DEX_AGE", f"http://127.0.0.1:{server.server_port}/dex.pth")
        with pytest.raises(WeightsUnavailableError, match="refusing plain http"):
            store.resolve_weights("dex_age", progress=False)
    finally:
        server.shutdown()
        server.server_close()


def test_no_content_length_stops_at_the_expected_size(home, monkeypatch):
    sent = []

    class Endless(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no length

        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            block = b"\x80" + b"\0" * (1 << 16)
            try:
                for _ in range(4000):  # 256 MB if nobody stops reading
                    self.wfile.write(block)
                    sent.append(len(block))
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = dataclasses.replace(registry.get("dex_age"), size=2_000_000)  # a 2 MB file, say
        monkeypatch.setitem(registry._BY_NAME, "dex_age", entry)
        monkeypatch.setenv("SAM_AGE_URL_DEX_AGE", f"http://127.0.0.1:{server.server_port}/dex.pth")
        t0 = time.perf_counter()
        with pytest.raises(WeightsUnavailableError, match="more than 3,248,576 bytes arrived"):
            store.resolve_weights("dex_age", progress=False)
        assert time.perf_counter() - t0 < 30
    finally:
        server.shutdown()
        server.server_close()
    assert sum(sent) < 64 << 20  # the reader stopped long before the end
    assert sorted(p.name for p in home.iterdir()) == []  # nothing kept, no .part
