"""A registry file from the Hugging Face Hub (or a mirror at ``$HF_ENDPOINT``), through
``huggingface_hub.hf_hub_download``.

How the two caches relate: the Hub client keeps its own cache (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) with a lock per file and a temporary
file renamed into place. We let it fetch there, exactly as any Hub tool would (a file you
already fetched with ``hf download`` is not fetched again; ``HF_HUB_OFFLINE=1`` serves it
from there), then ``store`` checks the blob and *hard-links* it under its registry name in
sam-age's cache (a copy when the two caches are on different disks). Deleting the Hub
cache afterwards frees nothing while the link exists and breaks nothing.

What is verified: the client checks the size the Hub announced (``X-Linked-Size``);
it does not hash the file, so we do: an LFS file's ETag *is* its sha256
(``X-Linked-Etag``), a small git file's is its git blob sha1, and both are compared here.
A transfer cut off mid-way is resumed with ``Range`` within the same run (the client
retries); unlike our Drive/URL downloader it does not keep a partial file across runs.

Offline fails fast: the client retries a failed connection with back-off (about 25 s per
file), so before asking it anything the endpoint's name is resolved and one TCP connection
is tried (:func:`preflight`): a name that does not resolve or a refused connection is an
:class:`~.download.UnreachableError` at once (behind a proxy the client decides).

Every failure is a :mod:`.download` error type, so ``store`` falls back to the next
source the same way for the Hub and for plain URLs. ``huggingface_hub`` is imported only
here and only when a Hub source is tried.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .download import CHUNK, DownloadError, LocalError, RefusedError, RejectedFile, TransientError, UnreachableError
from .registry import Source, hub_endpoint

SHA256 = re.compile(r"[0-9a-f]{64}")
GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


@dataclass
class HubFile:
    path: Path  # the blob in the Hub cache (symlinks resolved)
    etag: Optional[str]  # the Hub's ETag: sha256 for LFS files, git blob sha1 otherwise
    sha256: str  # computed here
    size: int


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now, not at import."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The Hub client's cache folder, as it computes it, from the environment now."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.path.expandvars(os.path.expanduser(os.environ[key])))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def available() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_client():
    """The client logs multi-line warnings while it retries; our caller reports one line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _hash(path: Path, etag: Optional[str]) -> str:
    """sha256 of the file; also checks a git-blob-sha1 ETag (non-LFS files) in the same pass."""
    sha = hashlib.sha256()
    git = hashlib.sha1(f"blob {path.stat().st_size}\0".encode()) if etag and GIT_SHA1.fullmatch(etag) else None
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
            if git is not None:
                git.update(block)
    if git is not None and git.hexdigest() != etag:
        raise RejectedFile(f"git sha1 {git.hexdigest()} does not match the Hub's ETag {etag}")
    return sha.hexdigest()


PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def preflight(endpoint: str, timeout: float = 5.0) -> None:
    """Raise :class:`UnreachableError` at once when ``endpoint``'s host name does not resolve
    or every address refuses the connection (no retries: that is what being offline looks
    like). A slow or timed-out connection passes: the client's own retries may help there."""
    if any(os.environ.get(k) for k in PROXY_VARS):
        return
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return
    netloc = parts.netloc or host
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        reason = f"cannot reach {netloc} (the name does not resolve: {e.strerror or e})"
        raise UnreachableError(reason) from None
    except (OSError, UnicodeError):
        return
    refused = None
    for family, kind, proto, _name, address in infos[:4]:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(min(max(timeout, 0.1), 5.0))
                sock.connect(address)
            return
        except (ConnectionRefusedError, OSError) as e:
            if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) in (
                errno.ECONNREFUSED,
                errno.ENETUNREACH,
                errno.EHOSTUNREACH,
            ):
                refused = e.strerror or type(e).__name__
                continue
            return  # a timeout or anything else: let the client try (and retry)
    if refused is not None:
        reason = f"cannot reach {netloc} ({refused.lower()})"
        raise UnreachableError(reason)


def _quiet_tqdm():
    from tqdm.auto import tqdm

    class Quiet(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet


def fetch(source: Source, *, offline: bool = False, timeout: float = 30.0, progress: bool = True) -> HubFile:
    """Fetch ``source`` (kind ``hub``) into the Hub cache and check it against the Hub's
    ETag. ``offline`` (or ``HF_HUB_OFFLINE``): the Hub cache only, no request at all.
    Raises a :class:`~.download.DownloadError` subclass with a one-line reason."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UnreachableError("huggingface_hub is not installed (pip install huggingface_hub)") from None
    from .. import __version__

    local_only = offline or hub_offline()
    endpoint = hub_endpoint()
    if not local_only and not _in_hub_cache(source):
        preflight(endpoint, timeout)
    for attempt in range(1 if local_only else 2):  # a damaged cached blob is fetched again, once
        try:
            with _quiet_client():
                found = hf_hub_download(
                    source.location,
                    source.filename,
                    revision=source.revision,
                    repo_type=source.repo_type,
                    cache_dir=str(hub_cache_dir()),
                    endpoint=endpoint,
                    etag_timeout=timeout,
                    local_files_only=local_only,
                    library_name="sam-age",
                    library_version=__version__,
                    tqdm_class=None if progress else _quiet_tqdm(),
                )
        except Exception as e:  # the client raises many types; each becomes one of ours
            raise _classify(e, source, endpoint, local_only) from None
        blob = Path(os.path.realpath(found))
        etag = (
            blob.name
            if blob.parent.name == "blobs" and (SHA256.fullmatch(blob.name) or GIT_SHA1.fullmatch(blob.name))
            else None
        )
        try:
            digest = _hash(blob, etag)
            if etag and SHA256.fullmatch(etag) and digest != etag:
                raise RejectedFile(
                    f"sha256 {digest}, the Hub says {etag} (damaged in transfer or on disk; "
                    "removed from the Hugging Face cache)"
                )
        except RejectedFile:
            _forget(blob, Path(found))  # a damaged blob would be served again and again: drop it
            if attempt == 0 and not local_only:
                continue
            raise
        return HubFile(blob, etag, digest, blob.stat().st_size)
    raise AssertionError("not reached")


def _in_hub_cache(source: Source) -> bool:
    """The pinned revision's file is already in the Hub cache (the client serves it
    without a request): no preflight needed."""
    if not source.revision or not GIT_SHA1.fullmatch(source.revision):
        return False
    repo = f"{source.repo_type}s--" + source.location.replace("/", "--")
    return (hub_cache_dir() / repo / "snapshots" / source.revision / (source.filename or "")).is_file()


def _forget(blob: Path, pointer: Path) -> None:
    for f in (pointer, blob):
        try:
            f.unlink()
        except OSError:
            pass


def _classify(e: BaseException, source: Source, endpoint: str, local_only: bool) -> DownloadError:
    from huggingface_hub import errors as hf_errors

    def kind(*names: str) -> type:  # the names moved between client versions: a missing one matches nothing
        for name in names:
            if hasattr(hf_errors, name):
                return getattr(hf_errors, name)
        return type(names[0], (Exception,), {})

    class hf:
        LocalEntryNotFoundError = kind("LocalEntryNotFoundError")
        OfflineModeIsEnabled = kind("OfflineModeIsEnabled")
        GatedRepoError = kind("GatedRepoError")
        RepositoryNotFoundError = kind("RepositoryNotFoundError")
        RevisionNotFoundError = kind("RevisionNotFoundError")
        RemoteEntryNotFoundError = kind("RemoteEntryNotFoundError", "EntryNotFoundError")
        HfHubHTTPError = kind("HfHubHTTPError")
        FileMetadataError = kind("FileMetadataError")

    host = urllib.parse.urlsplit(endpoint).netloc or endpoint
    where = f"{source.location}/{source.filename}" + (f" at {source.revision[:12]}" if source.revision else "")
    cause = e.__cause__ or e.__context__
    if local_only and isinstance(e, (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled)):
        return UnreachableError(
            f"offline (HF_HUB_OFFLINE or downloads turned off) and the Hugging Face cache {hub_cache_dir()} has no copy"
        )
    if isinstance(e, hf.GatedRepoError):
        return RefusedError(f"{where} is gated on {host}: accept its terms and log in (hf auth login)")
    if isinstance(e, hf.RepositoryNotFoundError):
        return RefusedError(f"{host} has no repository {source.location} (or it is private)")
    if isinstance(e, hf.RevisionNotFoundError):
        return RefusedError(f"{host} has no revision {source.revision} of {source.location}")
    if isinstance(e, hf.RemoteEntryNotFoundError):
        return RefusedError(f"{host} has no {where}")
    if isinstance(e, hf.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        text = f"HTTP {status} from {host} for {where}"
        return TransientError(text) if status is None or status >= 500 or status in (408, 429) else RefusedError(text)
    if isinstance(e, hf.FileMetadataError):
        return RefusedError(
            f"{host} does not answer like the Hugging Face Hub (no commit or ETag header; check HF_ENDPOINT)"
        )
    if isinstance(e, (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled)):
        detail = _first_sentence(cause) if cause is not None else "no connection"
        return UnreachableError(f"cannot reach {host} ({detail})")
    name = type(e).__name__
    if name in ("ConnectError", "ConnectTimeout") or isinstance(e, ConnectionRefusedError):
        return UnreachableError(f"cannot reach {host} ({_first_sentence(e)})")
    if "Timeout" in name or isinstance(e, TimeoutError):
        return TransientError(f"{host} timed out")
    if name in ("RemoteProtocolError", "ReadError", "NetworkError") or isinstance(e, ConnectionError):
        return TransientError(f"connection to {host} broke ({_first_sentence(e)})")
    if isinstance(e, OSError):
        if e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, getattr(errno, "EDQUOT", -1)):
            return LocalError(f"cannot write to the Hugging Face cache {hub_cache_dir()} ({e.strerror or e})")
        match = re.search(r"should be of size (\d+) but has size (\d+)", str(e))
        if match:
            return RejectedFile(
                f"received {int(match.group(2)):,} bytes where the Hub announced "
                f"{int(match.group(1)):,} (a wrong size, or cut off)"
            )
    return TransientError(f"{host}: {_first_sentence(e)}")


def _first_sentence(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return (match.group(1) if match else text).rstrip(".")
