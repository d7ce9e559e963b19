"""A loopback HTTP server (127.0.0.1 only) that plays the parts a weights host can play:
a plain file with Range support, a connection that drops midway, a server that ignores
Range, Google Drive's virus-scan confirm page (form and cookie variants), and 404s."""
from __future__ import annotations

import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional, Tuple

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
                    page = DRIVE_PAGE.format(action=server.url("/download"), file_id=query.get("id", ""),
                                             uuid=UUID)
                    return self._send_html(page)
                if route == "/download":
                    if query.get("confirm") == "t" and query.get("uuid") == UUID and query.get("id"):
                        return self._send_file(honour_range=True)
                    return self._send_html("<html><body>bad confirm</body></html>", status=403)
                if route == "/uc-cookie":  # Drive, old style: token in a cookie
                    if query.get("confirm") == COOKIE_TOKEN and COOKIE_TOKEN in (self.headers.get("Cookie") or ""):
                        return self._send_file(honour_range=True)
                    return self._send_html("<html><body>large file</body></html>",
                                           cookie=f"download_warning_13058876669334088843_x={COOKIE_TOKEN}")
                if route == "/quota":
                    return self._send_html("<html><body>Too many users have viewed or downloaded "
                                           "this file recently.</body></html>")
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
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url(path: str = "/file.bin") -> str:
    """A loopback URL nobody listens on (bind, read the port, close)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


def isolate_weights_env(monkeypatch, folder) -> None:
    """Point the cache at ``folder`` and drop anything from the environment that would
    send a test to the network (proxies, URL overrides, offline switch)."""
    import os
    monkeypatch.setenv("SAM_AGE_HOME", str(folder))
    for key in list(os.environ):
        if key.lower().endswith("_proxy") or key.startswith("SAM_AGE_URL_") or key == "SAM_AGE_OFFLINE":
            monkeypatch.delenv(key, raising=False)
