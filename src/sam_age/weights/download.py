"""Resumable HTTP(S) downloads with the standard library, and the checks a fetched file
must pass before it takes its name in the cache.

- Bytes go to ``DEST.part``; an interrupted transfer keeps it and the next attempt asks for
  the rest with a ``Range`` header (a server that ignores ``Range`` restarts it).
- The file is checked (:func:`check_candidate`: not a web page, not far too small, a zip
  or pickle checkpoint, the right checksum) before it is renamed into place, so ``DEST``
  is either absent or complete and right; a file that fails a check is deleted (it is
  wrong, not incomplete).
- Google Drive answers large files with a "can't scan for viruses" page; its form (or the
  older ``confirm=`` link / ``download_warning`` cookie) is followed to the real file.
- Transport (issue 22): only ``https://``; plain ``http://`` only for the exact URL the user
  gave (``--source URL``, ``$SAM_AGE_URL_<NAME>``) or a loopback host, and a redirect from
  https to http is refused (:class:`_SafeRedirects`). The bytes read are capped at the
  expected size with a margin (:func:`byte_cap`) whether or not the server sends a
  ``Content-Length``, so an endless answer stops early and is deleted.
Every failure is a :class:`DownloadError` with a one-line reason; its *type* says what to
do next (retry the same URL, try the next source, or stop); the caller (``store``) adds
the manual steps.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import html
import http.client
import http.cookiejar
import json
import os
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..errors import WeightsUnavailableError
from ..fileio import format_size

CHUNK = 1 << 20
USER_AGENT = "sam-age (weights downloader; python urllib)"
TOO_SMALL = 0.5  # a file under half the expected size is not the file (a page, an error, a stub)


class DownloadError(WeightsUnavailableError):
    """A file could not be fetched; ``reason`` is one line. The subclass says what helps."""


class TransientError(DownloadError):
    """Cut connection, timeout, server error: the same source again (resuming) may work."""


class UnreachableError(DownloadError):
    """No route, refused, unknown host: offline for now; the next source may still work."""


class RefusedError(DownloadError):
    """The source answered, but not with the file (HTTP 4xx, a web page): do not retry it."""


class RejectedFile(DownloadError):
    """A complete answer that is not the file: far too small, not a checkpoint, wrong checksum."""


class LocalError(DownloadError):
    """This machine's side: disk full, folder not writable, another process on the file.
    Another source would fail the same way: stop."""


def sha256_of(path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# -- what a fetched file must be -----------------------------------------------------------


@dataclass
class Expect:
    """What is known about the file before it arrives.

    ``size`` with ``size_exact=False`` is a hint: far below it rejects, any other mismatch
    only warns. ``sha256s``: ``(digest, where it comes from)``; a full digest must match,
    a shorter one is a prefix (torchvision's file names)."""

    size: Optional[int] = None
    size_exact: bool = False
    sha256s: List[Tuple[str, str]] = field(default_factory=list)
    checkpoint: bool = True  # must be a zip (torch >= 1.6) or pickle (older torch, Paddle) file


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip()[:64].lower()
    return (
        text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) or b"<html" in head[:1024].lower()
    )


def _safetensors_head(head: bytes, size: int) -> bool:
    """A safetensors file: a little-endian header length that fits the file, then ``{``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8


def file_problem(path: Path, expect: Expect) -> Optional[str]:
    """The cheap checks (no hashing): a web page, empty, far too small (or not the exact
    size), not a zip/pickle checkpoint, a zip without its directory (cut short). None if
    the file passes them."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(1024)
    if size == 0:
        return "empty file"
    if _looks_like_html(head):
        return f"a web page ({format_size(size)}), not the file (quota exceeded, sign-in needed, or the link moved)"
    if expect.size:
        if expect.size_exact and size != expect.size:
            return f"{size:,} bytes, the file has {expect.size:,}"
        if size < expect.size * TOO_SMALL:
            return (
                f"far too small: {format_size(size)} ({size:,} bytes) where the file is about "
                f"{format_size(expect.size)}; a cut download or an error page"
            )
    if expect.checkpoint:
        if head[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(path) as z:
                    if not any(n.endswith("data.pkl") for n in z.namelist()):
                        return "a zip file but not a PyTorch checkpoint (no data.pkl)"
            except (zipfile.BadZipFile, OSError, ValueError):
                return "a PyTorch zip checkpoint cut short or damaged (its directory at the end is missing)"
        elif head[:1] != b"\x80" and not _safetensors_head(head, size):
            return f"not a zip/pickle checkpoint (it starts with {head[:16]!r})"
    return None


def check_candidate(path, expect: Expect, digest: Optional[str] = None) -> Tuple[str, List[str]]:
    """All checks a fetched file must pass to take the cache name: :func:`file_problem`,
    then the checksums (``digest``: the file's sha256 when already computed). Returns
    ``(sha256, warnings)``; raises :class:`RejectedFile`."""
    path = Path(path)
    problem = file_problem(path, expect)
    if problem:
        raise RejectedFile(problem)
    digest = digest or sha256_of(path)
    for want, where in expect.sha256s:
        if not want:
            continue
        ok = digest == want.lower() if len(want) == 64 else digest.startswith(want.lower())
        if not ok:
            raise RejectedFile(f"sha256 {digest}, expected {want}{'' if len(want) == 64 else '...'} ({where})")
    warnings = []
    size = path.stat().st_size
    if expect.size and not expect.size_exact and size != expect.size:
        warnings.append(
            f"{size:,} bytes where {expect.size:,} were reported (a hint, not a published fact: "
            "kept, as its checks passed)"
        )
    return digest, warnings


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


# -- transport rules ------------------------------------------------------------------------

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_CAP = 3 * 1000**3  # no expected size known: the largest official file is 2.27 GB
CAP_MARGIN = 1.10


def byte_cap(expect: "Expect") -> int:
    """The most bytes a download for ``expect`` may bring: its exact size, or its reported
    size with a 10 % margin (plus 1 MiB), else :data:`DEFAULT_CAP`."""
    if expect.size and expect.size_exact:
        return int(expect.size)
    if expect.size:
        return int(expect.size * CAP_MARGIN) + (1 << 20)
    return DEFAULT_CAP


def check_url(url: str, user_url: Optional[str] = None, previous: Optional[str] = None) -> None:
    """Refuse a URL sam-age must not fetch: a scheme other than https (plain http only for
    ``user_url`` itself or a loopback host, and never as a redirect away from https)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme != "http":
        raise RefusedError(f"refusing {parts.scheme or 'a relative'} URL {url} (only https downloads)")
    from_https = previous is not None and urllib.parse.urlsplit(previous).scheme == "https"
    if user_url is not None and url == user_url:
        return
    if from_https:
        raise RefusedError(f"refusing a redirect from https to plain http ({url})")
    if (parts.hostname or "") in LOOPBACK_HOSTS:
        return
    raise RefusedError(
        f"refusing plain http ({url}): only https downloads, unless you give that "
        "http URL yourself (--source URL or $SAM_AGE_URL_<NAME>)"
    )


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Every redirect target passes :func:`check_url` before it is followed."""

    def __init__(self, user_url: Optional[str]):
        super().__init__()
        self.user_url = user_url

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(urllib.parse.urljoin(req.full_url, newurl), self.user_url, previous=req.full_url)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
        raise LocalError("another process is downloading this file; wait for it", f.name) from None


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


def drop_part(part: Path) -> None:
    """Delete a ``.part`` file and its sidecar (a wrong file, not an incomplete one)."""
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


def _classify(url: str, e: BaseException) -> DownloadError:
    """A network or file-system exception -> the DownloadError type that says what helps."""
    host = urllib.parse.urlsplit(url).netloc or url
    if isinstance(e, urllib.error.HTTPError):
        text = f"HTTP {e.code} {e.reason} from {url}"
        return TransientError(text) if e.code >= 500 or e.code in (408, 429) else RefusedError(text)
    detail = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(detail, (socket.timeout, TimeoutError)):
        return TransientError(f"{host} timed out")
    if isinstance(e, urllib.error.URLError) and not isinstance(detail, ConnectionResetError):
        text = str(detail).strip() or type(detail).__name__
        return UnreachableError(f"cannot reach {host} ({text})")
    if isinstance(detail, (ConnectionError, http.client.HTTPException)):
        text = str(detail).strip() or type(detail).__name__
        return TransientError(f"connection to {host} broke ({text})")
    if isinstance(detail, OSError) and (
        getattr(detail, "filename", None) is not None
        or detail.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, getattr(errno, "EDQUOT", -1))
    ):
        return LocalError(f"cannot write the download ({detail.strerror or detail})")
    text = str(detail).strip() or type(detail).__name__
    return TransientError(f"{host}: {text}")


_NETWORK_ERRORS = (
    urllib.error.URLError,
    socket.timeout,
    TimeoutError,
    ConnectionError,
    http.client.HTTPException,
    OSError,
)


def _fetch(
    opener,
    url: str,
    part: Path,
    timeout: float,
    progress: bool,
    desc: str,
    cookies: http.cookiejar.CookieJar,
    cap: int = DEFAULT_CAP,
    user_url: Optional[str] = None,
) -> None:
    """Fill ``part`` from ``url``, appending to what is there. Raises a DownloadError on
    any failure, leaving the bytes received so far in ``part``."""
    try:
        _fetch_raw(opener, url, part, timeout, progress, desc, cookies, cap, user_url)
    except DownloadError:
        raise
    except _NETWORK_ERRORS as e:
        raise _classify(url, e) from None


def _fetch_raw(opener, url, part, timeout, progress, desc, cookies, cap=DEFAULT_CAP, user_url=None) -> None:
    from tqdm.auto import tqdm

    origin = url
    if part.exists() and _read_sidecar(part).get("url") != origin:
        drop_part(part)  # bytes from elsewhere (or of unknown origin): never mix files
    for _hop in range(3):  # page -> confirm -> file (at most)
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _open(opener, url, offset, timeout, _read_sidecar(part).get("validator"))
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # we already have every byte
                return
            raise
        with response:
            if _is_html(response):
                page = response.read(2 << 20).decode("utf-8", "replace")
                nxt = confirm_url(page, response.geturl(), cookies)
                if nxt is None or nxt == url:
                    raise RefusedError(
                        f"{url} answered with a web page instead of the file "
                        "(quota exceeded, sign-in needed, or the link moved)"
                    )
                check_url(nxt, user_url, previous=response.geturl())
                url = nxt
                continue
            if offset and response.status != 206:
                offset = 0  # the server ignored Range, or the file changed: start again
            if not offset:
                _sidecar(part).write_text(
                    json.dumps({"url": origin, "validator": _validator(response)}), encoding="utf-8"
                )
            total = _total_size(response, offset)
            if total is not None and total > cap:
                raise RejectedFile(f"the server announces {total:,} bytes, more than the {cap:,} this file can have")
            if total is not None:
                _check_space(part.parent, total - offset)
            with (
                open(part, "ab") as f,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=desc,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                _lock(f)  # before truncating: never cut another process's file
                if not offset:
                    f.truncate(0)
                received = offset
                while True:
                    block = response.read(min(CHUNK, cap + 1 - received))
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    if received > cap:  # no (or a false) Content-Length: stop at the cap
                        raise RejectedFile(f"more than {cap:,} bytes arrived, more than this file can have")
                    bar.update(len(block))
            if total is not None and received < total:
                raise TransientError(f"connection closed after {received:,} of {total:,} bytes")
            return
    raise RefusedError(f"{url}: too many confirmation pages")


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise LocalError(f"not enough disk space in {folder}: need {format_size(needed)}, {format_size(free)} free")


def fetch_to_part(
    url: str,
    part,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 2,
    cap: int = DEFAULT_CAP,
    user_url: Optional[str] = None,
) -> Path:
    """Download ``url`` into ``part`` (resuming what is there); returns ``part``.

    A :class:`TransientError` (cut connection, timeout, 5xx) is retried ``retries`` times,
    each attempt resuming; any other DownloadError is raised at once. The bytes received
    so far stay in ``part`` (with a sidecar naming the URL) for the next run."""
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    check_url(url, user_url)
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies), _SafeRedirects(user_url))
    desc = part.name[:-5] if part.name.endswith(".part") else part.name
    for attempt in range(1 + max(0, retries)):
        try:
            _fetch(opener, url, part, timeout, progress, desc, cookies, cap, user_url)
            return part
        except TransientError:
            if attempt == max(0, retries):
                raise
    return part  # not reached


def download_one(
    url: str,
    dest,
    expect: Expect,
    *,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 2,
    accept: Optional[Callable[[Path], None]] = None,
    user_url: Optional[str] = None,
) -> Tuple[str, List[str]]:
    """Fetch ``url`` into ``dest.part`` (resuming), check it (:func:`check_candidate`, then
    ``accept(part)`` if given, which raises :class:`RejectedFile`) and only then rename it
    to ``dest``. Returns ``(sha256, warnings)``. Raises the typed DownloadError: a rejected
    file is deleted (it is wrong, not incomplete); a transfer that keeps failing leaves its
    ``.part`` for the next run, and says so."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        fetch_to_part(
            url, part, progress=progress, timeout=timeout, retries=retries, cap=byte_cap(expect), user_url=user_url
        )
    except RejectedFile as e:  # too many bytes: wrong, not incomplete
        drop_part(part)
        raise RejectedFile(f"{e.reason}; deleted it") from None
    except (LocalError, RefusedError, UnreachableError):
        raise
    except DownloadError as e:
        if part.exists():
            raise type(e)(f"{e.reason} (partial download kept in {part}; run again to resume)") from None
        raise
    try:
        digest, warnings = check_candidate(part, expect)
        if accept is not None:
            accept(part)
    except RejectedFile as e:
        drop_part(part)
        raise RejectedFile(f"{e.reason}; deleted it") from None
    os.replace(part, dest)
    drop_part(part)  # the sidecar
    return digest, warnings


def download(
    urls,
    dest,
    *,
    sha256: Optional[str] = None,
    sha256_prefix: Optional[str] = None,
    expect: Optional[Expect] = None,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 2,
) -> Tuple[Path, str]:
    """:func:`download_one` for each of ``urls`` until one works; returns ``(dest, sha256)``.
    A :class:`LocalError` (disk full, ...) stops at once: another URL would fail the same way."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(urls, str):
        urls = [urls]
    expect = dataclasses.replace(expect or Expect(checkpoint=False))
    expect.sha256s = list(expect.sha256s) + [(d, "given") for d in (sha256 or sha256_prefix,) if d]
    reasons = []
    for url in urls:
        try:
            digest, _warnings = download_one(
                url, dest, expect, progress=progress, timeout=timeout, retries=retries, user_url=url
            )
        except LocalError as e:
            raise DownloadError(e.reason, e.path) from None
        except DownloadError as e:
            reasons.append(e.reason)
            continue
        return dest, digest
    raise DownloadError("; ".join(reasons))
