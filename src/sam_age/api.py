"""``sam-age serve``'s server: the REST API at ``/v1`` and the Gradio demo at ``/``, one
process, one model, one queue (``pip install 'sam-age[serve]'``).

    from sam_age import AgePipeline
    from sam_age.api import Limits, build_server, serve
    server = build_server(AgePipeline.from_pretrained("sam_ffhq_aging"), Limits(), users={"ann": "pw"})
    serve(server, host="127.0.0.1", port=7860)        # Ctrl+C stops it

Layers, outermost first (plain ASGI wrappers around one FastAPI app):

* :class:`Metrics`: every request counted by route and status, and timed (Prometheus).
* :class:`BasicAuth`: HTTP Basic credentials for everything (the demo page, its upload and
  queue routes, the API, ``/metrics``, the docs) except the probes ``/v1/health`` and
  ``/v1/ready``; a browser asks for them once and sends them with every call of the page.
* :class:`BodyLimit`: a body larger than the limit is refused with 413 before it is read
  (``Content-Length``) or as soon as the bytes read pass it (chunked uploads).
* FastAPI: ``/v1/*``, ``/metrics``, ``/docs`` and ``/openapi.json``; the Gradio page mounted
  at ``/`` (``gradio.mount_gradio_app``), so both share the process and the model.

Invariants:

* The model is used by one thread only, :class:`ModelQueue`'s worker. API requests decode
  and detect their faces in their own threads (no model), then hand the faces to the worker;
  the worker waits ``wait_ms`` for other requests' faces and runs them through
  :meth:`AgePipeline.age_prepared_many` together (same ages and size in one call). Each
  face's images depend on that face alone, so an answer equals what ``AgePipeline`` gives
  for that photo by itself (tested). The demo's handlers take the same worker through
  :meth:`ModelQueue.slot` (a turn in the same queue): one model, one queue.
* Everything is bounded: the body (``max_upload_mb``), the pixels (``max_pixels``, checked
  from the header before decoding), the faces per photo (``max_faces``), the ages per
  request (``MAX_AGES``), the requests in flight (``max_queue``: one more is refused at once
  with 429 and ``Retry-After``, never queued), and the disk (a request's files live in a
  job folder removed when its answer is sent).
* Errors are JSON ``{"error": ..., "detail": ...}`` with the status the OpenAPI schema
  declares; a bad photo is named and explained as the CLI does (``images.read_image``).
"""

import asyncio
import base64
import binascii
import contextlib
import io
import ipaddress
import json
import logging
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from PIL import Image

from .ages import format_age, parse_ages
from .defaults import (
    DEFAULT_MAX_FACES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_WAIT_MS,
)
from .errors import CheckpointError, ImageReadError, InputError, NoFaceError, SamAgeError, UsageError
from .face.prepare import AlignedFace, prepare_faces
from .marks import COMPOSITE, GENERATED, Mark, encode_image
from .marks import DEFAULT as DEFAULT_MARK
from .pipeline import AgePipeline
from .render import gif_bytes, label_frames
from .results import MASKS

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
PROBES = ("/v1/health", "/v1/ready")  # open without credentials (load balancers, Kubernetes)
MAX_AGES = 21  # the demo's bound (0:100:5)
MAX_BATCH_FACES = 32  # faces per model call of the queue's worker
ANIMATION_FRAMES_PER_AGE = 4  # `sam-age age --gif`'s defaults
ANIMATION_FPS = 12.0
RETRY_AFTER_S = 2
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
FORMAT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
PIL_FORMATS = {"png": ("PNG", {}), "jpg": ("JPEG", {"quality": 95}), "webp": ("WEBP", {"quality": 95})}


@dataclass(frozen=True)
class Limits:
    """What one request may cost (see the module docstring); ``wait_ms``: how long the
    model's worker waits for more requests' faces before a batch."""

    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_faces: int = DEFAULT_MAX_FACES
    max_queue: int = DEFAULT_MAX_QUEUE
    wait_ms: float = DEFAULT_WAIT_MS

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_body_bytes(self) -> int:
        """A JSON body carries the photo in base64 (4/3 of it), and a form has its headers."""
        return self.max_upload_bytes * 4 // 3 + 64 * 1024


# ------------------------------------------------------------------------------ credentials


def parse_credentials(values: Iterable[str] = (), files: Iterable[str] = ()) -> Dict[str, str]:
    """``--auth USER:PASSWORD`` values and ``--auth-file`` files (one ``USER:PASSWORD`` a
    line; blank lines and ``#`` comments skipped) -> ``{user: password}``. UsageError names
    the bad value or line (never the password)."""
    users: Dict[str, str] = {}

    def add(text: str, where: str) -> None:
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            raise UsageError(f"{where}: expected USER:PASSWORD (both non-empty)")
        users[user] = password

    for value in values:
        add(value, f"--auth {value.partition(':')[0]}:...")
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--auth-file {name}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                add(line, f"--auth-file {name}, line {n}")
        if not users:
            raise UsageError(f"--auth-file {name}: no USER:PASSWORD line in it")
    return users


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, ``localhost``)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, share: bool, users: Dict[str, str], no_auth: bool) -> None:
    """Refuse (UsageError, exit 2) to hand the model to a network without credentials,
    unless ``--no-auth`` says the user means it."""
    if users or no_auth:
        return
    if share:
        raise UsageError(
            "--share makes the server public: give --auth USER:PASSWORD or --auth-file FILE "
            "(or --no-auth to serve without credentials)"
        )
    if not is_loopback(host):
        raise UsageError(
            f"--host {host} lets other machines in: give --auth USER:PASSWORD or --auth-file FILE "
            "(or --no-auth to serve without credentials)"
        )


# ------------------------------------------------------------------------------ the queue


class Busy(SamAgeError):
    """The bounded queue is full: try again in a moment (HTTP 429, a line in the demo)."""

    def __init__(self, waiting: int):
        super().__init__(f"the server is busy ({waiting} requests waiting); try again in a few seconds")


@dataclass
class _AgeJob:
    faces: List[AlignedFace]
    requested: list  # parsed ages (floats, RelativeAge)
    size: int
    frames_per_age: Optional[int]  # an animation per face when set
    future: Future
    report: bool = False  # measure each output (sam_age.report: achieved age, identity)


@dataclass
class _Call:
    fn: object
    future: Future


class ModelQueue:
    """The model's one worker thread and its bounded queue (see the module docstring).
    ``observe(faces, images)``: called after each model call (metrics)."""

    def __init__(
        self,
        pipeline: AgePipeline,
        max_queue: int = DEFAULT_MAX_QUEUE,
        wait_ms: float = DEFAULT_WAIT_MS,
        max_batch_faces: int = MAX_BATCH_FACES,
        observe=None,
    ):
        self.pipeline = pipeline
        self.max_queue = max(1, int(max_queue))
        self.wait_s = max(0.0, float(wait_ms)) / 1000.0
        self.max_batch_faces = max(1, int(max_batch_faces))
        self.observe = observe
        self._items: deque = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="sam-age-model", daemon=True)
        self._thread.start()

    # -- the callers' side ----------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def _put(self, item) -> Future:
        with self._cv:
            if self._closed:
                raise Busy(len(self._items))
            if len(self._items) >= self.max_queue:
                raise Busy(len(self._items))
            self._items.append(item)
            self._cv.notify()
        return item.future

    def age(
        self, faces, requested, size: int = 256, frames_per_age: Optional[int] = None, report: bool = False
    ) -> Future:
        """-> a Future of ``(AgingResult without paste-back, frames per face or None)``;
        ``report``: each face result carries ``report`` (measured in the model's thread)."""
        return self._put(_AgeJob(list(faces), list(requested), int(size), frames_per_age, Future(), bool(report)))

    def call(self, fn) -> Future:
        """Run ``fn()`` on the worker, alone (the estimator, anything else on the model)."""
        return self._put(_Call(fn, Future()))

    @contextlib.contextmanager
    def slot(self):
        """The model for the caller's thread, for the ``with`` body, in its turn in the
        queue (the demo's handlers). Raises :class:`Busy` when the queue is full."""
        go, done = threading.Event(), threading.Event()

        def hold():
            go.set()
            done.wait()

        future = self.call(hold)
        try:
            while not go.wait(0.5):
                if future.done():  # the worker was closed before our turn
                    future.result()
                    raise Busy(self.depth)
            yield self.pipeline
        finally:
            done.set()

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            pending = list(self._items)
            self._items.clear()
            self._cv.notify_all()
        for item in pending:
            item.future.set_exception(Busy(0))
        self._thread.join(timeout)

    # -- the worker -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                first = self._items.popleft()
            if isinstance(first, _Call):
                self._run_call(first)
                continue
            batch = [first]
            n = len(first.faces)
            deadline = time.monotonic() + self.wait_s
            with self._cv:
                while n < self.max_batch_faces and not self._closed:
                    if self._items:
                        if not isinstance(self._items[0], _AgeJob):
                            break  # a turn of the demo: keep the order
                        job = self._items.popleft()
                        batch.append(job)
                        n += len(job.faces)
                        continue
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
            self._run_batch(batch)

    @staticmethod
    def _run_call(item: _Call) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            item.future.set_result(item.fn())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            item.future.set_exception(e)

    def _run_batch(self, batch: List[_AgeJob]) -> None:
        groups: Dict[tuple, List[_AgeJob]] = {}
        for job in batch:
            if job.future.set_running_or_notify_cancel():
                groups.setdefault((tuple(format_age(a) for a in job.requested), job.size, job.report), []).append(job)
        for jobs in groups.values():
            try:
                outs = self._age(jobs)
            except BaseException as e:  # noqa: BLE001
                if len(jobs) == 1:
                    jobs[0].future.set_exception(e)
                    continue
                outs = []
                for job in jobs:  # one request's problem is not the others'
                    try:
                        outs.append(self._age([job])[0])
                    except BaseException as e1:  # noqa: BLE001
                        outs.append(e1)
            for job, out in zip(jobs, outs):
                if isinstance(out, BaseException):
                    job.future.set_exception(out)
                else:
                    job.future.set_result(out)

    def _age(self, jobs: List[_AgeJob]) -> list:
        pipe = self.pipeline
        results = pipe.age_prepared_many(
            [(None, job.faces) for job in jobs], jobs[0].requested, size=jobs[0].size, report=jobs[0].report
        )
        outs = []
        for job, result in zip(jobs, results):
            frames = (
                [pipe.animate(f, frames_per_age=job.frames_per_age) for f in result.faces]
                if job.frames_per_age
                else None
            )
            outs.append((result, frames))
        if self.observe is not None:
            faces = sum(len(job.faces) for job in jobs)
            self.observe(faces, faces * len(jobs[0].requested))
        return outs


# ------------------------------------------------------------------------------ metrics


class ServerMetrics:
    """The Prometheus series, in a registry of this server's own (tests build many)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sam_age_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sam_age_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.queue_depth = Gauge("sam_age_queue_depth", "jobs waiting for the model", registry=self.registry)
        self.in_flight = Gauge("sam_age_requests_in_flight", "API requests being served", registry=self.registry)
        self.batch_faces = Histogram(
            "sam_age_batch_faces",
            "faces per model call (batching across requests)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.images = Counter("sam_age_images", "aged face images made", registry=self.registry)

    def observe_batch(self, faces: int, images: int) -> None:
        self.batch_faces.observe(faces)
        self.images.inc(images)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


KNOWN_ROUTES = ("/v1/age", "/v1/estimate", "/v1/health", "/v1/ready", "/metrics", "/docs", "/openapi.json")


def route_label(path: str) -> str:
    """A bounded set of labels: the API's routes, ``/v1/other``, and ``demo`` for the rest."""
    if path in KNOWN_ROUTES:
        return path
    return "/v1/other" if path.startswith(API_PREFIX + "/") else "demo"


# ------------------------------------------------------------------------------ ASGI layers


async def _send_json(send, status: int, body: dict, headers: Sequence = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Metrics:
    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = route_label(scope.get("path", ""))
        status = {"code": 500}
        start = time.perf_counter()

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


class BasicAuth:
    """HTTP Basic credentials on every path but ``open_paths`` (compared in constant time)."""

    def __init__(self, app, users: Dict[str, str], open_paths: Sequence[str] = PROBES, realm: str = "sam-age"):
        self.app = app
        self.users = {u.encode(): p.encode() for u, p in users.items()}
        self.open_paths = tuple(open_paths)
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'.encode()

    def allowed(self, header: Optional[bytes]) -> bool:
        if not header or not header[:6].lower() == b"basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        ok = False
        for u, p in self.users.items():  # every entry compared: no early exit to time
            ok |= secrets.compare_digest(u, user) & secrets.compare_digest(p, password)
        return bool(sep) and ok

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.open_paths:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization")
        if self.allowed(header):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _send_json(
            send,
            401,
            {
                "error": "authentication required",
                "detail": "this server needs credentials (HTTP Basic: curl -u USER:PASSWORD)",
            },
            [(b"www-authenticate", self.challenge)],
        )


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from ``Content-Length``, or as soon as
    the bytes received pass it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, int(length))
        seen = {"bytes": 0, "started": False}

        async def counted():
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_bytes:
                    raise _TooLarge()
            return message

        async def watch(message):
            if message["type"] == "http.response.start":
                seen["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except _TooLarge:
            if not seen["started"]:
                await self._refuse(send, None)

    async def _refuse(self, send, n: Optional[int]) -> None:
        size = f"{n / 2**20:.1f} MB" if n is not None else "more"
        await _send_json(
            send,
            413,
            {
                "error": "upload too large",
                "detail": f"the body is {size}; this server takes up to {self.max_bytes / 2**20:.1f} MB",
            },
        )


# ------------------------------------------------------------------------------ requests


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", headers: Optional[dict] = None):
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def _bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ApiError(422, "invalid field", f"{name}: expected true or false, not {str(value)[:40]!r}")


def _name_of(filename: Optional[str]) -> str:
    """A safe stem for the files of the answer (letters, digits, ``._-``); ``image`` otherwise."""
    stem = Path(str(filename or "")).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80]
    return stem or "image"


@dataclass
class AgeRequest:
    image: bytes
    filename: str
    ages: list
    paste_back: bool = False
    mask: str = "face"
    size: int = 256
    format: str = "png"
    all_faces: bool = False
    gif: bool = False
    report: bool = False
    labels: bool = True


FIELDS = ("ages", "paste_back", "mask", "size", "format", "all_faces", "gif", "report", "labels")


async def read_fields(request, allowed: Sequence[str]) -> tuple:
    """The photo and the fields of a multipart form or a JSON body -> ``(bytes, filename, fields)``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data" or ctype == "application/x-www-form-urlencoded":
        try:
            form = await request.form(max_files=1, max_fields=len(allowed) + 1)
        except Exception as e:  # malformed multipart, too many parts
            raise ApiError(400, "malformed form", " ".join(str(e).split())[:200] or type(e).__name__) from None
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "no image", "send the photo as the multipart file field 'image'")
        data = await upload.read()
        await upload.close()
        fields = {k: v for k, v in form.items() if k != "image"}
        filename = upload.filename or "image"
        await form.close()
    elif ctype == "application/json" or ctype.endswith("+json"):
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "malformed JSON", str(e)[:200]) from None
        if not isinstance(body, dict):
            raise ApiError(400, "malformed JSON", "expected an object with 'image' (base64)")
        text = body.get("image")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "no image", "put the photo in 'image' as base64")
        if text.startswith("data:") and "," in text:  # a data: URL
            text = text.split(",", 1)[1]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "bad base64", "'image' is not valid base64") from None
        fields = {k: v for k, v in body.items() if k not in ("image", "filename")}
        filename = str(body.get("filename") or "image")
    else:
        raise ApiError(
            415,
            "unsupported content type",
            f"send multipart/form-data (field 'image') or application/json (base64), not {ctype or 'nothing'}",
        )
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ApiError(422, "unknown field", f"{unknown[0][:40]!r}; the fields are image, {', '.join(allowed)}")
    if not data:
        raise ApiError(400, "no image", "the image is empty")
    return data, filename, fields


def age_request(data: bytes, filename: str, fields: dict) -> AgeRequest:
    """Check the fields (the Python API's names and the CLI's syntax) -> :class:`AgeRequest`."""
    ages_value = fields.get("ages", "0:100:10")
    if isinstance(ages_value, (int, float)) and not isinstance(ages_value, bool):
        ages_value = [ages_value]
    if isinstance(ages_value, list) and not all(
        isinstance(a, (int, float, str)) and not isinstance(a, bool) for a in ages_value
    ):
        raise ApiError(422, "invalid ages", "ages: a string like '30', '0:100:10', '+20' or a list of them")
    if not isinstance(ages_value, (str, list)):
        raise ApiError(422, "invalid ages", "ages: a string like '30', '0:100:10', '+20'")
    try:
        ages = parse_ages(ages_value, relative=True)
    except (SamAgeError, ValueError, TypeError) as e:
        raise ApiError(422, "invalid ages", str(e)) from None
    if not ages:
        raise ApiError(422, "invalid ages", "ask for at least one age")
    if len(ages) > MAX_AGES:
        raise ApiError(422, "invalid ages", f"at most {MAX_AGES} ages a request (got {len(ages)})")
    mask = str(fields.get("mask", "face"))
    if mask not in MASKS:
        raise ApiError(422, "invalid field", f"mask: one of {', '.join(MASKS)}, not {mask[:40]!r}")
    fmt = str(fields.get("format", "png")).lower()
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in PIL_FORMATS:
        raise ApiError(422, "invalid field", f"format: one of png, jpg, webp, not {fmt[:40]!r}")
    try:
        size = int(str(fields.get("size", 256)))
    except ValueError:
        raise ApiError(
            422, "invalid field", f"size: a number of pixels, not {str(fields.get('size'))[:40]!r}"
        ) from None
    return AgeRequest(
        data,
        filename,
        ages,
        _bool(fields.get("paste_back", False), "paste_back"),
        mask,
        size,
        fmt,
        _bool(fields.get("all_faces", False), "all_faces"),
        _bool(fields.get("gif", False), "gif"),
        _bool(fields.get("report", False), "report"),
        _bool(fields.get("labels", True), "labels"),
    )


def input_error(e: BaseException) -> ApiError:
    """A SamAgeError about a request -> the status and message the API answers."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, Busy):
        return ApiError(429, "busy", e.reason, {"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(e, NoFaceError):
        return ApiError(422, "no face", _named(e))
    if isinstance(e, ImageReadError):
        reason = e.reason.lower()
        if "too large" in reason:
            return ApiError(413, "image too large", _named(e))
        if "too small" in reason:
            return ApiError(422, "image too small", _named(e))
        return ApiError(415, "not a usable image", _named(e))
    if isinstance(e, InputError):
        return ApiError(422, "unusable input", _named(e))
    if isinstance(e, CheckpointError):
        return ApiError(503, "model unavailable", e.reason)
    if isinstance(e, SamAgeError):
        return ApiError(422, "invalid request", e.reason)
    raise e


def _named(e: SamAgeError) -> str:
    return f"{Path(str(e.path)).name}: {e.reason}" if getattr(e, "path", None) else e.reason


def check_pixels(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse a photo over ``max_pixels`` from its header, before decoding it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we judge the size here
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Exception:  # not an image, or over PIL's own limit: the reader says why
        return
    if w * h > max_pixels:
        raise ImageReadError(
            f"image too large ({w}x{h} pixels; this server takes up to {max_pixels / 1e6:g} megapixels)", name
        )


def prepare_upload(data: bytes, name: str, all_faces: bool, limits: Limits):
    """Decode and find the faces (no model): ``(photo, faces, found)`` with at most
    ``limits.max_faces`` faces, best first."""
    check_pixels(data, name, limits.max_pixels)
    photo, faces = prepare_faces(data, all_faces=all_faces, name=name)
    return photo, faces[: limits.max_faces], len(faces)


def _encode(img: Image.Image, fmt: str, mark: Optional[Mark] = None) -> bytes:
    """``img`` as ``fmt``'s bytes, with ``mark``'s AI-edit XMP (and C2PA) (:mod:`sam_age.marks`)."""
    pil, options = PIL_FORMATS[fmt]
    return encode_image(img, pil, mark, **options)


def _marked(mark: Optional[Mark], **what) -> Optional[Mark]:
    return None if mark is None else mark.but(**what)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _box(quad) -> Optional[List[float]]:
    if quad is None:
        return None
    xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
    return [round(min(xs), 2), round(min(ys), 2), round(max(xs), 2), round(max(ys), 2)]


def age_answer(req: AgeRequest, result, frames, found: int, mark: Optional[Mark] = None) -> dict:
    """The JSON answer; every image in it marked with ``mark`` (None: unmarked), per image
    with its age and kind (a face: generated; a pasted photo: a composite)."""
    labels = [format_age(a) for a in req.ages]
    faces = []
    for k, face in enumerate(result.faces):
        anim = None
        if frames is not None:
            seq = label_frames(frames[k], face.ages, ANIMATION_FRAMES_PER_AGE) if req.labels else frames[k]
            anim = _b64(gif_bytes(seq, ANIMATION_FPS, _marked(mark, source=GENERATED, age=",".join(labels))))
        faces.append(
            {
                "box": _box(face.quad),
                "quad": None if face.quad is None else [[round(float(x), 2) for x in p] for p in face.quad],
                "score": round(float(face.score), 4),
                "estimated_age": None if face.estimated_age is None else round(float(face.estimated_age), 2),
                "images": [
                    {
                        "requested": lab,
                        "age": round(float(a), 4),
                        "image": _b64(_encode(img, req.format, _marked(mark, source=GENERATED, age=lab))),
                    }
                    for lab, a, img in zip(labels, face.ages, face.images)
                ],
                "animation": anim,
                "report": None if face.report is None else [r.to_json() for r in face.report],
            }
        )
    pasted = None
    if result.pasted:
        pasted = [
            {"requested": lab, "image": _b64(_encode(img, req.format, _marked(mark, source=COMPOSITE, age=lab)))}
            for lab, img in zip(labels, result.pasted)
        ]
    return {
        "ages": labels,
        "format": req.format,
        "media_type": FORMAT_TYPES[req.format],
        "faces_found": found,
        "faces": faces,
        "pasted": pasted,
        "notes": result.notes,
    }


class _JobFolder:
    """``dataset.runner.write_results``'s staging: paths inside one request's job folder."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel


def age_zip(req: AgeRequest, result, frames, workdir: Path, mark: Optional[Mark] = None) -> bytes:
    """The files ``sam-age age`` writes for this photo (per-input layout), zipped. They are
    written by the CLI's own writer into a job folder that is removed before returning."""
    from .dataset.outputs import Layout, Request
    from .dataset.runner import write_results

    request = Request(
        ages=tuple(format_age(a) for a in req.ages),
        checkpoint="",
        size=req.size,
        format=req.format,
        all_faces=req.all_faces,
        paste_back=req.paste_back,
        mask=req.mask,
        gif=req.gif,
        frames_per_age=ANIMATION_FRAMES_PER_AGE if req.gif else None,
        fps=ANIMATION_FPS if req.gif else None,
        labels=req.labels,
    )
    name = _name_of(req.filename)
    plan = Layout(request).plan(name, len(result.faces))
    job = workdir / uuid.uuid4().hex
    job.mkdir(parents=True)
    try:
        write_results(_JobFolder(job), plan, request, result, frames, mark)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for rel in plan.all():
                z.write(job / rel, rel)
        return buf.getvalue()
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _wants(accept: str) -> str:
    """The answer's media type from ``Accept``: JSON unless zip or an image is preferred."""
    accept = (accept or "").lower()
    for part in accept.split(","):
        media = part.split(";")[0].strip()
        if media in ("application/zip",) or media in IMAGE_TYPES:
            return media
        if media in ("application/json", "*/*", "application/*"):
            return "application/json"
    return "application/json"


# ------------------------------------------------------------------------------ the app

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
AGE_FORM_PROPERTIES = {
    "ages": {
        "type": "string",
        "default": "0:100:10",
        "description": "ages in the CLI's syntax: 30, 0,30,60, 0:100:10, +20 (years from the estimated age)",
    },
    "paste_back": {"type": "boolean", "default": False},
    "mask": {"type": "string", "enum": list(MASKS), "default": "face"},
    "size": {"type": "integer", "default": 256, "description": "256 or the generator's size"},
    "format": {"type": "string", "enum": ["png", "jpg", "webp"], "default": "png"},
    "all_faces": {"type": "boolean", "default": False},
    "gif": {"type": "boolean", "default": False},
    "labels": {
        "type": "boolean",
        "default": True,
        "description": "each animation frame and strip tile shows its age (false: bare)",
    },
    "report": {
        "type": "boolean",
        "default": False,
        "description": "per output: the age DEX estimates on it and its identity similarity with the input",
    },
}
FACE_SCHEMA = {
    "type": "object",
    "required": ["box", "quad", "score", "estimated_age", "images", "animation"],
    "properties": {
        "box": {"type": ["array", "null"], "items": {"type": "number"}},
        "quad": {"type": ["array", "null"], "items": {"type": "array", "items": {"type": "number"}}},
        "score": {"type": "number"},
        "estimated_age": {"type": ["number", "null"]},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["requested", "age", "image"],
                "properties": {
                    "requested": {"type": "string"},
                    "age": {"type": "number"},
                    "image": {"type": "string", "format": "byte"},
                },
            },
        },
        "animation": {"type": ["string", "null"], "format": "byte"},
        "report": {
            "type": ["array", "null"],
            "description": "with report: per age, what the output reached (achieved_age, identity, caption)",
            "items": {"type": "object"},
        },
    },
}
AGE_ANSWER_SCHEMA = {
    "type": "object",
    "required": ["ages", "format", "media_type", "faces_found", "faces", "pasted", "notes"],
    "properties": {
        "ages": {"type": "array", "items": {"type": "string"}},
        "format": {"type": "string"},
        "media_type": {"type": "string"},
        "faces_found": {"type": "integer"},
        "faces": {"type": "array", "items": FACE_SCHEMA},
        "pasted": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["requested", "image"],
                "properties": {"requested": {"type": "string"}, "image": {"type": "string", "format": "byte"}},
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}
ESTIMATE_ANSWER_SCHEMA = {
    "type": "object",
    "required": ["faces_found", "faces"],
    "properties": {
        "faces_found": {"type": "integer"},
        "faces": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["box", "quad", "score", "age"],
                "properties": {
                    "box": {"type": ["array", "null"], "items": {"type": "number"}},
                    "quad": {"type": ["array", "null"]},
                    "score": {"type": "number"},
                    "age": {"type": "number"},
                },
            },
        },
    },
}


def _error_responses(*codes: int) -> dict:
    names = {
        400: "Malformed request",
        401: "Credentials needed",
        406: "Cannot answer in the media type asked",
        413: "Upload or image too large",
        415: "Not a usable image or content type",
        422: "Bad field, no face",
        429: "Queue full: try again after Retry-After seconds",
        503: "Model unavailable",
    }
    return {str(c): {"description": names[c], "content": {"application/json": {"schema": ERROR_SCHEMA}}} for c in codes}


def _body(properties: dict) -> dict:
    form = {
        "type": "object",
        "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary"}, **properties},
    }
    js = {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {"type": "string", "format": "byte", "description": "the photo, base64"},
            "filename": {"type": "string"},
            **properties,
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}, "application/json": {"schema": js}},
        }
    }


@dataclass
class SamAgeServer:
    """What :func:`build_server` makes: ``app`` (the ASGI app to serve), ``api`` (the
    FastAPI app), the model's ``queue``, the ``demo`` page (or None), ``metrics``."""

    app: object
    api: object
    queue: ModelQueue
    demo: object
    metrics: ServerMetrics
    workdir: Path
    limits: Limits

    def close(self) -> None:
        self.queue.close()
        if self.demo is not None:
            with contextlib.suppress(Exception):
                self.demo.sam_age.clean_jobs()
        shutil.rmtree(self.workdir, ignore_errors=True)


def build_server(
    pipeline: AgePipeline,
    limits: Limits = Limits(),
    *,
    users: Optional[Dict[str, str]] = None,
    demo: bool = True,
    workdir: Optional[Path] = None,
    title: str = "SAM age",
    mark: Optional[Mark] = DEFAULT_MARK,
) -> SamAgeServer:
    """The FastAPI app with the API, and the demo mounted at ``/`` (``demo=False``: API only).
    ``mark``: how every image the API answers with and the page serves says it was edited by
    AI (:mod:`sam_age.marks`; None: unmarked, ``--no-mark``)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    metrics = ServerMetrics()
    queue = ModelQueue(pipeline, max_queue=limits.max_queue, wait_ms=limits.wait_ms, observe=metrics.observe_batch)
    metrics.queue_depth.set_function(lambda: queue.depth)
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sam-age-serve-"))
    workdir.mkdir(parents=True, exist_ok=True)
    in_flight = {"n": 0}
    metrics.in_flight.set_function(lambda: in_flight["n"])
    lock = threading.Lock()

    api = FastAPI(
        title=f"{title} API",
        version="1",
        description="Age the faces in a photo (SAM). Errors are JSON {error, detail}. "
        "Credentials: HTTP Basic when the server was started with --auth.",
    )

    def error(status: int, err: str, detail: str = "", headers: Optional[dict] = None):
        return JSONResponse({"error": err, "detail": detail}, status_code=status, headers=headers)

    @api.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error(exc.status, exc.error, exc.detail, exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return error(exc.status_code, str(exc.detail), "", getattr(exc, "headers", None))

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error(422, "invalid request", "; ".join(str(e.get("msg")) for e in exc.errors())[:500])

    @contextlib.contextmanager
    def admitted():
        with lock:
            if in_flight["n"] >= limits.max_queue:
                raise ApiError(
                    429,
                    "busy",
                    f"the server is busy ({in_flight['n']} requests in flight); try again in a few seconds",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
            in_flight["n"] += 1
        try:
            yield
        finally:
            with lock:
                in_flight["n"] -= 1

    async def photo_in(data: bytes, filename: str, all_faces: bool):
        if len(data) > limits.max_upload_bytes:
            raise ApiError(
                413,
                "upload too large",
                f"{_name_of(filename)}: {len(data) / 2**20:.1f} MB; "
                f"this server takes up to {limits.max_upload_mb:g} MB",
            )
        try:
            return await run_in_threadpool(prepare_upload, data, filename, all_faces, limits)
        except SamAgeError as e:
            raise input_error(e) from None

    age_responses = {
        "200": {
            "description": "The aged faces (JSON), the files (zip) or one image",
            "content": {
                "application/json": {"schema": AGE_ANSWER_SCHEMA},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                **{t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
            },
        },
        **_error_responses(400, 401, 406, 413, 415, 422, 429, 503),
    }

    @api.post(
        API_PREFIX + "/age",
        summary="Age the face(s) in a photo",
        response_class=Response,
        responses=age_responses,
        openapi_extra=_body(AGE_FORM_PROPERTIES),
    )
    async def age(request: Request):
        """A photo in (multipart field ``image``, or JSON with ``image`` in base64), the
        face(s) at every age out. ``Accept: application/zip``: the files as ``sam-age age``
        writes them; with one age, ``Accept: image/png|jpeg|webp``: that image (the photo
        with the face put back when ``paste_back``)."""
        wants = _wants(request.headers.get("accept", ""))
        with admitted():
            data, filename, fields = await read_fields(request, FIELDS)
            req = age_request(data, filename, fields)
            if wants in IMAGE_TYPES and len(req.ages) != 1:
                raise ApiError(
                    406,
                    "one image needs one age",
                    f"Accept: {wants} returns one image: ask for one age, not {len(req.ages)}",
                )
            try:
                pipeline.check_size(req.size)
            except UsageError as e:
                raise ApiError(422, "invalid field", e.reason) from None
            photo, faces, found = await photo_in(data, filename, req.all_faces)
            try:
                future = queue.age(
                    faces,
                    req.ages,
                    size=req.size,
                    frames_per_age=ANIMATION_FRAMES_PER_AGE if req.gif else None,
                    report=req.report,
                )
                result, frames = await asyncio.wrap_future(future)
            except SamAgeError as e:
                raise input_error(e) from None

            def finish():
                result.source = photo
                if req.paste_back:
                    result.pasted = [
                        AgePipeline.paste(photo, result.faces, k, mask=req.mask) for k in range(len(req.ages))
                    ]
                if wants == "application/zip":
                    return Response(
                        age_zip(req, result, frames, workdir, mark),
                        media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{_name_of(filename)}.zip"'},
                    )
                if wants in IMAGE_TYPES:
                    img = result.pasted[0] if result.pasted else result.faces[0].images[0]
                    source = COMPOSITE if result.pasted else GENERATED
                    return Response(
                        _encode(img, IMAGE_TYPES[wants], _marked(mark, source=source, age=format_age(req.ages[0]))),
                        media_type=wants,
                    )
                return JSONResponse(age_answer(req, result, frames, found, mark))

            return await run_in_threadpool(finish)

    estimate_responses = {
        "200": {
            "description": "The estimated age of each face",
            "content": {"application/json": {"schema": ESTIMATE_ANSWER_SCHEMA}},
        },
        **_error_responses(400, 401, 413, 415, 422, 429, 503),
    }

    @api.post(
        API_PREFIX + "/estimate",
        summary="Estimate the age of the face(s) in a photo (DEX)",
        response_class=Response,
        responses=estimate_responses,
        openapi_extra=_body({"all_faces": AGE_FORM_PROPERTIES["all_faces"]}),
    )
    async def estimate(request: Request):
        with admitted():
            data, filename, fields = await read_fields(request, ("all_faces",))
            all_faces = _bool(fields.get("all_faces", False), "all_faces")
            photo, faces, found = await photo_in(data, filename, all_faces)
            try:
                future = queue.call(lambda: pipeline.estimator.estimate_aligned([f.image for f in faces]))
                ages = await asyncio.wrap_future(future)
            except SamAgeError as e:
                raise input_error(e) from None
            return JSONResponse(
                {
                    "faces_found": found,
                    "faces": [
                        {
                            "box": _box(f.quad),
                            "quad": None if f.quad is None else [[round(float(x), 2) for x in p] for p in f.quad],
                            "score": round(float(f.score), 4),
                            "age": round(float(a), 2),
                        }
                        for f, a in zip(faces, ages)
                    ],
                }
            )

    status_schema = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}

    @api.get(
        API_PREFIX + "/health",
        summary="Liveness: the process answers",
        responses={"200": {"description": "alive", "content": {"application/json": {"schema": status_schema}}}},
    )
    async def health():
        return {"status": "ok"}

    @api.get(
        API_PREFIX + "/ready",
        summary="Readiness: the model is loaded and its worker runs",
        responses={
            "200": {"description": "ready", "content": {"application/json": {"schema": status_schema}}},
            **_error_responses(503),
        },
    )
    async def ready():
        if not queue.alive:
            return error(503, "not ready", "the model's worker is not running (shutting down?)")
        return {
            "status": "ready",
            "device": str(pipeline.device),
            "queue_depth": queue.depth,
            "in_flight": in_flight["n"],
            "max_queue": limits.max_queue,
        }

    @api.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_error_responses(401),
        },
    )
    async def metrics_route():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    blocks = None
    if demo:
        import gradio as gr

        from .web import build_app

        blocks = build_app(
            pipeline,
            max_upload_mb=limits.max_upload_mb,
            workdir=workdir / "web",
            title=f"{title} demo",
            model_slot=queue.slot,
            max_queue=limits.max_queue,
            max_faces=limits.max_faces,
            max_pixels=limits.max_pixels,
            mark=mark,
        )
        gr.mount_gradio_app(
            api,
            blocks,
            path="/",
            max_file_size=f"{limits.max_upload_mb:g}mb",
            show_error=False,
            footer_links=["gradio"],
        )

    app = BodyLimit(api, limits.max_body_bytes)
    if users:
        app = BasicAuth(app, users)
    app = Metrics(app, metrics)
    return SamAgeServer(app, api, queue, blocks, metrics, workdir, limits)


def serve(
    server: SamAgeServer,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    log_level: str = "warning",
    graceful_s: float = 3.0,
) -> None:
    """Run ``server`` with uvicorn until SIGINT/SIGTERM (Ctrl+C): open requests get
    ``graceful_s`` seconds, then the model's worker stops and the job folders go.
    OSError when it cannot listen on ``host:port``."""
    import uvicorn

    config = uvicorn.Config(
        server.app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
        access_log=False,
    )
    uv = uvicorn.Server(config)

    def stop(sig, frame):  # the first signal: graceful; a second Ctrl+C: at once
        if uv.should_exit:
            uv.force_exit = True
        uv.should_exit = True

    # Our handlers instead of uvicorn's: it re-raises the signal after shutting down, which
    # would kill the process (SIGTERM) before the job folders are removed.
    uv.capture_signals = contextlib.nullcontext
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        uv.run()
    except KeyboardInterrupt:  # a Ctrl+C before the handlers were in place
        pass
    except SystemExit:  # uvicorn's answer to a port it cannot bind (it has logged why)
        raise OSError(f"cannot serve on {host}:{port}") from None
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        server.close()
