"""Resumable HTTP(S) downloads with the standard library.

- Bytes go to ``DEST.part``; an interrupted transfer keeps it and the next attempt asks for
  the rest with a ``Range`` header (a server that ignores ``Range`` restarts it).
- The checksum is checked before the file is renamed into place, so ``DEST`` is either
  absent or complete and right; a file with the wrong checksum is deleted.
- Google Drive answers large files with a "can't scan for viruses" page; its form (or the
  older ``confirm=`` link / ``download_warning`` cookie) is followed to the real file.
Every failure is a :class:`DownloadError` with a one-line reason; the caller (``store``)
adds the manual steps.
"""
from __future__ import annotations

import errno
import hashlib
import html
import http.client
import json
import http.cookiejar
import os
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import WeightsUnavailableError

CHUNK = 1 << 20
USER_AGENT = "sam-age (weights downloader; python urllib)"


class DownloadError(WeightsUnavailableError):
    """A file could not be fetched; ``reason`` is one line."""


def sha256_of(path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# -- Google Drive's interstitial page ------------------------------------------------------

class _FormParser(HTMLParser):
    """Collects each <form>'s action and its input fields, and every link's href."""

    def __init__(self):
        super().__init__()
        self.forms: List[Tuple[str, Dict[str, str]]] = []
        self.links: List[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


def confirm_url(page: str, page_url: str, cookies: Iterable[http.cookiejar.Cookie] = ()) -> Optional[str]:
    """The URL that skips Drive's virus-scan page, or None when ``page`` is not one."""
    parser = _FormParser()
    try:
        parser.feed(page)
    except Exception:  # a broken page is simply "not a confirm page"
        return None
    for action, fields in parser.forms:
        if "confirm" in fields or "uuid" in fields:
            target = urllib.parse.urljoin(page_url, html.unescape(action or page_url))
            sep = "&" if urllib.parse.urlsplit(target).query else "?"
            return target + sep + urllib.parse.urlencode(fields)
    for href in parser.links:
        href = html.unescape(href)
        if "confirm=" in href and ("export=download" in href or "id=" in href):
            return urllib.parse.urljoin(page_url, href)
    for cookie in cookies:  # the oldest flow: token in a cookie, echoed as confirm=
        if cookie.name.startswith("download_warning"):
            return _with_query(page_url, confirm=cookie.value)
    match = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if match:
        return _with_query(page_url, confirm=match.group(1))
    return None


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


# -- one transfer --------------------------------------------------------------------------

def _lock(f) -> None:
    """Refuse a second process writing the same ``.part`` (POSIX only; best effort)."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise DownloadError("another process is downloading this file; wait for it", f.name) from None


def _open(opener, url: str, offset: int, timeout: float, validator: Optional[str] = None):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:  # "send the rest only if the file is still the one we started"
            headers["If-Range"] = validator
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


# The ``.part`` file's sidecar remembers which URL it came from and the server's
# validator (strong ETag or Last-Modified), so that bytes of two different files are
# never glued together: another URL starts afresh, a changed file is re-sent whole.

def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_sidecar(part: Path) -> dict:
    try:
        data = json.loads(_sidecar(part).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _validator(response) -> Optional[str]:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # weak ETags are not allowed in If-Range
        return etag
    return response.headers.get("Last-Modified")


def _drop_part(part: Path) -> None:
    for f in (part, _sidecar(part)):
        try:
            f.unlink()
        except FileNotFoundError:
            pass


def _total_size(response, offset: int) -> Optional[int]:
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes\s+\d+-\d+/(\d+)", content_range)
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (offset if response.status == 206 else 0)
    return None


def _is_html(response) -> bool:
    return response.headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _fetch(opener, url: str, part: Path, timeout: float, progress: bool, desc: str,
           cookies: http.cookiejar.CookieJar) -> None:
    """Fill ``part`` from ``url``, appending to what is there. Raises on any failure,
    leaving the bytes received so far in ``part``."""
    from tqdm.auto import tqdm

    origin = url
    if part.exists() and _read_sidecar(part).get("url") != origin:
        _drop_part(part)  # bytes from elsewhere (or of unknown origin): never mix files
    for _hop in range(3):  # page -> confirm -> file (at most)
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _open(opener, url, offset, timeout, _read_sidecar(part).get("validator"))
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # we already have every byte
                return
            raise DownloadError(f"HTTP {e.code} {e.reason} from {url}") from None
        with response:
            if _is_html(response):
                page = response.read(2 << 20).decode("utf-8", "replace")
                nxt = confirm_url(page, response.geturl(), cookies)
                if nxt is None or nxt == url:
                    raise DownloadError(f"{url} answered with a web page instead of the file "
                                        "(quota exceeded, sign-in needed, or the link moved)")
                url = nxt
                continue
            if offset and response.status != 206:
                offset = 0  # the server ignored Range, or the file changed: start again
            if not offset:
                _sidecar(part).write_text(json.dumps({"url": origin, "validator": _validator(response)}),
                                          encoding="utf-8")
            total = _total_size(response, offset)
            if total is not None:
                _check_space(part.parent, total - offset)
            with open(part, "ab") as f, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=desc, disable=not progress, leave=False) as bar:
                _lock(f)  # before truncating: never cut another process's file
                if not offset:
                    f.truncate(0)
                received = offset
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received < total:
                raise DownloadError(f"connection closed after {received} of {total} bytes")
            return
    raise DownloadError(f"{url}: too many confirmation pages")


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(f"not enough disk space in {folder}: need {needed / 1e9:.2f} GB, "
                            f"{free / 1e9:.2f} GB free")


def download(urls, dest, *, sha256: Optional[str] = None, sha256_prefix: Optional[str] = None,
             progress: bool = True, timeout: float = 30.0, retries: int = 2) -> Tuple[Path, str]:
    """Download the first of ``urls`` that works into ``dest``; returns ``(dest, sha256)``.

    Each URL gets ``1 + retries`` attempts, each resuming from the ``.part`` file. On a
    checksum mismatch the partial file is deleted (it is wrong, not incomplete)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if isinstance(urls, str):
        urls = [urls]
    reasons = []
    for url in urls:
        cookies = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
        for _attempt in range(1 + max(0, retries)):
            try:
                _fetch(opener, url, part, timeout, progress, dest.name, cookies)
            except DownloadError as e:
                reason = e.reason
                if reason.startswith("HTTP 4") or "web page" in reason or "disk space" in reason \
                        or "another process" in reason:
                    break  # retrying will not help
                continue
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                    http.client.HTTPException, OSError) as e:
                if _is_local_write_error(e):
                    raise DownloadError(f"cannot write the download ({e.strerror or e})", part) from None
                reason = _network_reason(url, e)
                if isinstance(e, urllib.error.URLError) and not isinstance(
                        getattr(e, "reason", None), (socket.timeout, TimeoutError, ConnectionResetError)):
                    break  # no route / refused / DNS: offline, retrying now will not help
                continue
            digest = sha256_of(part)
            expected = sha256 or sha256_prefix
            if expected and not digest.lower().startswith(expected.lower()):
                _drop_part(part)
                raise DownloadError(f"downloaded file has sha256 {digest}, expected "
                                    f"{expected}{'...' if not sha256 else ''}; deleted it", dest)
            os.replace(part, dest)
            _drop_part(part)  # the sidecar
            return dest, digest
        reasons.append(reason)
    kept = f" (partial download kept in {part}; run again to resume)" if part.exists() else ""
    raise DownloadError("; ".join(reasons) + kept)


def _is_local_write_error(e: BaseException) -> bool:
    if isinstance(e, (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                      http.client.HTTPException)):
        return False
    return getattr(e, "filename", None) is not None or getattr(e, "errno", None) in (
        errno.ENOSPC, errno.EACCES, errno.EROFS, getattr(errno, "EDQUOT", -1))


def _network_reason(url: str, e: BaseException) -> str:
    host = urllib.parse.urlsplit(url).netloc or url
    detail = getattr(e, "reason", None) or e
    if isinstance(detail, (socket.timeout, TimeoutError)):
        return f"{host} timed out"
    text = str(detail).strip() or type(detail).__name__
    return f"cannot reach {host} ({text})"
