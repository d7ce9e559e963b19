"""Loopback HTTP servers (127.0.0.1 only) that play the parts a weights host can play.

``LoopbackServer``: a plain file with Range support, a connection that drops midway, a
server that ignores Range, Google Drive's virus-scan confirm page (form and cookie
variants), Drive's quota page, and 404s.

``HubServer``: the Hugging Face Hub's ``resolve`` endpoint as the real ``huggingface_hub``
client sees it through ``HF_ENDPOINT``: ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``
answer ``302`` with ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256), ``X-Linked-Size``
and a ``Location`` on a second port (the "CDN", another origin, as on the Hub), which
serves the bytes with ``Range``; unknown files are ``404`` with ``X-Error-Code:
EntryNotFound``. Faults on demand: a cut transfer, a size that lies, bytes that do not
match the sha256, a web page in place of the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

DRIVE_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{uuid}">
</form></body></html>"""
UUID = "0d1f-4c2a-stand-in"
COOKIE_TOKEN = "Xy_9tok"


class LoopbackServer:
    """``with LoopbackServer(payload) as s: s.url('/file.bin')``.

    ``cut_first``: the first N transfers of ``/cut.bin`` stop after half the bytes.
    ``requests``: (path with query, Range header or None) of every request, in order."""

    def __init__(self, payload: bytes, cut_first: int = 1):
        self.payload = payload
        self.cuts_left = cut_first
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.full_requests: List[Tuple[str, dict]] = []  # (path, all headers)
        self.etag: Optional[str] = None  # when set: sent as ETag, and If-Range honoured
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                server.full_requests.append((self.path, dict(self.headers)))
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                route = parts.path
                if route == "/file.bin":
                    return self._send_file(honour_range=True)
                if route == "/norange.bin":
                    return self._send_file(honour_range=False)
                if route == "/cut.bin":
                    cut = server.cuts_left > 0
                    server.cuts_left -= 1
                    return self._send_file(honour_range=True, cut=cut)
                if route == "/uc":  # Drive, new style: an HTML form to submit
                    page = DRIVE_PAGE.format(action=server.url("/download"), file_id=query.get("id", ""), uuid=UUID)
                    return self._send_html(page)
                if route == "/download":
                    if query.get("confirm") == "t" and query.get("uuid") == UUID and query.get("id"):
                        return self._send_file(honour_range=True)
                    return self._send_html("<html><body>bad confirm</body></html>", status=403)
                if route == "/uc-cookie":  # Drive, old style: token in a cookie
                    if query.get("confirm") == COOKIE_TOKEN and COOKIE_TOKEN in (self.headers.get("Cookie") or ""):
                        return self._send_file(honour_range=True)
                    return self._send_html(
                        "<html><body>large file</body></html>",
                        cookie=f"download_warning_13058876669334088843_x={COOKIE_TOKEN}",
                    )
                if route in ("/quota", "/uc-quota"):  # Drive's quota page: no confirm form in it
                    return self._send_html(
                        "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded"
                        "</title></head><body>Too many users have viewed or downloaded "
                        "this file recently.</body></html>"
                    )
                if route == "/page-as-file":  # a web page sent as if it were the file
                    body = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>" + b" " * 5000
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                self.send_error(404, "Not Found")

            def _send_html(self, page: str, status: int = 200, cookie: Optional[str] = None):
                body = page.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if cookie:
                    self.send_header("Set-Cookie", f"{cookie}; Path=/")
                self.end_headers()
                self.wfile.write(body)

            def _send_file(self, honour_range: bool, cut: bool = False):
                data, start = server.payload, 0
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if if_range is not None and if_range != server.etag:
                    rng = None  # RFC 9110: a changed file is sent whole
                if rng and honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                if server.etag:
                    self.send_header("ETag", server.etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut:  # promise everything, deliver half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


_SHA_CACHE: Dict[Tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 of a (possibly 2 GB) file, computed once per test session."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


class HubServer:
    """``with HubServer({"owner/repo/file.pt": payload}) as hub: env HF_ENDPOINT=hub.endpoint``.

    Keys are ``repo_id/path`` (``spaces/owner/repo/path`` for a Space); values are bytes
    or a Path (served from disk, hashed once). ``requests``: ``(method, path, Range)``.
    Faults: ``cut_first`` transfers stop half way; ``announce_size`` sends another
    X-Linked-Size than the real one; ``corrupt`` flips a byte in what is sent; ``page``
    sends a web page of the announced size in place of the file."""

    COMMIT = "c0ffee" + "0" * 34

    def __init__(
        self,
        files: Dict[str, Union[bytes, Path]],
        *,
        cut_first: int = 0,
        announce_size: Optional[int] = None,
        corrupt: bool = False,
        page: bool = False,
    ):
        self.files = {k.strip("/"): v for k, v in files.items()}
        self.cuts_left = cut_first
        self.announce_size = announce_size
        self.corrupt = corrupt
        self.page = page
        self.requests: List[Tuple[str, str, Optional[str]]] = []
        self._by_sha: Dict[str, Union[bytes, Path]] = {}
        server = self

        class Hub(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._resolve()

            def do_GET(self):
                self._resolve()

            def _resolve(self):
                server.requests.append((self.command, self.path, self.headers.get("Range")))
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).strip("/")
                m = re.match(r"((?:spaces/|datasets/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                key = f"{m.group(1)}/{m.group(3)}" if m else None
                commit = m.group(2) if m and re.fullmatch(r"[0-9a-f]{40}", m.group(2)) else server.COMMIT
                if key not in server.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Error-Message", "Entry not found")
                    self.send_header("X-Repo-Commit", commit)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = server.files[key]
                sha, size = server._facts(payload)
                self.send_response(302)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(server.announce_size or size))
                self.send_header("ETag", f'"{hashlib.sha1(sha.encode()).hexdigest()}"')
                self.send_header("Location", f"{server.cdn_url}/blobs/{sha}?signed=stand-in")
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Cdn(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(("CDN", self.path, self.headers.get("Range")))
                sha = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[-1]
                payload = server._by_sha.get(sha)
                if payload is None:
                    self.send_error(404, "Not Found")
                    return
                size = server._facts(payload)[1]
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                cut = server.cuts_left > 0
                server.cuts_left -= 1
                count = (size - start) // 2 if cut else size - start
                try:
                    server._send(self, payload, start, count)
                    if cut:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), Cdn)
        self.threads = [
            threading.Thread(target=h.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
            for h in (self.httpd, self.cdn)
        ]

    def _facts(self, payload) -> Tuple[str, int]:
        if isinstance(payload, (bytes, bytearray)):
            sha, size = hashlib.sha256(payload).hexdigest(), len(payload)
        else:
            sha, size = sha256_file(Path(payload)), Path(payload).stat().st_size
        self._by_sha[sha] = payload
        return sha, size

    def _send(self, handler, payload, start: int, count: int) -> None:
        if self.page:
            handler.wfile.write((b"<!DOCTYPE html><html><body>quota</body></html>" + b" " * count)[:count])
            return
        if isinstance(payload, (bytes, bytearray)):
            data = bytearray(payload[start : start + count])
            if self.corrupt and data:
                data[len(data) // 2] ^= 0xFF
            handler.wfile.write(bytes(data))
            return
        with open(payload, "rb") as f:  # large stand-ins: straight from the page cache
            handler.connection.sendfile(f, offset=start, count=count)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def gets(self) -> List[Tuple[str, Optional[str]]]:
        """The file transfers (CDN GETs): ``(path, Range)``."""
        return [(p, r) for m, p, r in self.requests if m == "CDN"]

    def __enter__(self) -> "HubServer":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        for h in (self.httpd, self.cdn):
            h.shutdown()
            h.server_close()


def checkpoint_bytes(n: int = 1000, seed: int = 0) -> bytes:
    """A small but real PyTorch zip checkpoint (passes the download checks; no loader
    takes it for an official file)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"x": torch.randn(n, generator=torch.Generator().manual_seed(seed))}, buf)
    return buf.getvalue()


# The layout of checkpoint_bytes(): a test that serves it as a registry file gives the
# entry this layout (a real entry's layout refuses such a look-alike).
CHECKPOINT_LAYOUT = ((("x",), (1000,)),)


def payload_is_the_file(monkeypatch, *names: str) -> None:
    """For one test, registry entries ``names`` expect checkpoint_bytes()'s layout."""
    import dataclasses

    from sam_age.weights import registry

    for name in names:
        monkeypatch.setitem(registry._BY_NAME, name, dataclasses.replace(registry.get(name), layout=CHECKPOINT_LAYOUT))


def loopback_only(monkeypatch) -> None:
    """Name resolution answers for 127.0.0.1 / localhost only: a test that would reach
    another host (drive.google.com, huggingface.co) fails at once instead."""
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1", b"localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"tests stay on 127.0.0.1, not {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


def closed_port_url(path: str = "/file.bin") -> str:
    """A loopback URL nobody listens on (bind, read the port, close)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


def isolate_weights_env(monkeypatch, folder, hub_endpoint: Optional[str] = None) -> None:
    """Point sam-age's cache at ``folder`` and the Hugging Face cache at ``folder``/../hf,
    send the Hub client to ``hub_endpoint`` (default: a closed loopback port, so no test
    can ever reach the real Hub), and drop anything from the environment that would send
    a test to the network or change its course (proxies, URL overrides, offline switches,
    tokens)."""
    monkeypatch.setenv("SAM_AGE_HOME", str(folder))
    monkeypatch.setenv("HF_HUB_CACHE", str(Path(folder).parent / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", hub_endpoint or closed_port_url("").rstrip("/"))
    for key in list(os.environ):
        if (
            key.lower().endswith("_proxy")
            or key.startswith("SAM_AGE_URL_")
            or key
            in ("SAM_AGE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
