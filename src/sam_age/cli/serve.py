"""``sam-age serve``: the web demo at ``/`` and the REST API at ``/v1`` from one process
(``pip install 'sam-age[serve]'``; see docs/guides/serving.md and http-api.md).

    sam-age serve --checkpoint sam_ffhq_aging --port 7860
    sam-age serve --host 0.0.0.0 --auth-file users.txt

The model is loaded once, before the server starts; visitors and API clients share it
through one bounded queue (:mod:`sam_age.api`). The weights flags every command has
(``--age_predictor_weights``, ``--curricular_face_weights``, ``--ir_se50_weights``) are
resolved at start-up and set on that one pipeline (:func:`start_weights`): no request
waits on a download of a file the command line named. Ctrl+C (SIGINT) or SIGTERM stops it within
a few seconds. A server others can reach needs credentials: a non-loopback ``--host`` or
``--share`` without ``--auth``/``--auth-file`` is refused (exit 2) unless ``--no-auth``.
"""

from __future__ import annotations

import argparse
import errno
import gc
import socket
import sys

from ..errors import EXIT_OK, UsageError
from .common import (
    add_age_predictor_argument,
    add_batch_size_argument,
    add_checkpoint_argument,
    add_device_arguments,
    add_identity_weights_arguments,
    add_mark_arguments,
    check_batch_size,
    check_device,
    identity_option,
    resolve_mark,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..defaults import DEFAULT_MAX_FACES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUEUE, DEFAULT_WAIT_MS

    p = subparsers.add_parser(
        "serve",
        help="run the web demo (Gradio) and the REST API",
        description="Serve a web page where a visitor uploads a portrait (or takes the bundled "
        "sample) and sees it at other ages: a strip, a gallery per face, an "
        "animation and the photo with the aged face pasted back; and, from the same "
        "process and model, a REST API at /v1 (docs at /docs, metrics at /metrics).",
    )
    add_checkpoint_argument(p)
    add_age_predictor_argument(p)  # for "+N years" and reports (loaded at the first such request)
    add_identity_weights_arguments(p)  # for reports (the page's report box, the API's report=true)
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: everyone, "
        "which needs --auth or --auth-file)",
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--share",
        action="store_true",
        help="also open a temporary public *.gradio.live link (needs the internet and --auth)",
    )
    p.add_argument(
        "--max-upload-mb",
        dest="max_upload_mb",
        type=float,
        default=20.0,
        metavar="N",
        help="refuse uploads larger than this (default 20)",
    )
    p.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="require these credentials (HTTP Basic) for the page and the API; repeatable. "
        "Prefer --auth-file: a command line is visible to other users of the machine",
    )
    p.add_argument(
        "--auth-file",
        dest="auth_file",
        action="append",
        default=[],
        metavar="FILE",
        help="credentials, one USER:PASSWORD a line (# comments); repeatable",
    )
    p.add_argument(
        "--no-auth",
        dest="no_auth",
        action="store_true",
        help="serve a non-loopback --host or --share without credentials (you mean it)",
    )
    p.add_argument(
        "--max-queue",
        dest="max_queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help="requests waiting for or in the model at once; one more is told to retry (HTTP 429) (default %(default)s)",
    )
    p.add_argument(
        "--max-faces",
        dest="max_faces",
        type=int,
        default=DEFAULT_MAX_FACES,
        metavar="N",
        help="faces aged per photo with all faces (best first) (default %(default)s)",
    )
    p.add_argument(
        "--max-megapixels",
        dest="max_megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        metavar="N",
        help="refuse photos with more pixels, before decoding (default %(default)g)",
    )
    p.add_argument(
        "--batch-wait-ms",
        dest="batch_wait_ms",
        type=float,
        default=DEFAULT_WAIT_MS,
        metavar="MS",
        help="how long the model waits for other requests' faces to batch them together (default %(default)g)",
    )
    add_mark_arguments(p)  # --no-mark, --sign-cert, --sign-key: every download is marked (and signed)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    check_batch_size(args.batch_size)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1..65535, not {args.port}")
    if args.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be positive, not {args.max_upload_mb:g}")
    for flag, value in (
        ("--max-queue", args.max_queue),
        ("--max-faces", args.max_faces),
        ("--max-megapixels", args.max_megapixels),
    ):
        if value <= 0:
            raise UsageError(f"{flag} must be positive, not {value:g}")
    if args.batch_wait_ms < 0:
        raise UsageError(f"--batch-wait-ms must be 0 or more, not {args.batch_wait_ms:g}")
    from ..api import Limits, build_server, check_exposure, parse_credentials, serve

    users = parse_credentials(args.auth, args.auth_file)
    check_exposure(args.host, args.share, users, args.no_auth)
    check_device(args.device)
    mark = resolve_mark(args, "serve")  # a certificate c2pa refuses: exit 2 before the model loads
    check_port(args.host, args.port)
    try:
        import fastapi  # noqa: F401
        import gradio  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UsageError(f"the server needs {e.name}: pip install 'sam-age[serve]'") from None

    from ..pipeline import AgePipeline

    age_predictor, identity = start_weights(args)
    pipeline = AgePipeline.from_pretrained(
        args.checkpoint,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        progress=True,
        age_predictor=age_predictor,
        identity=identity,
    )
    limits = Limits(
        max_upload_mb=args.max_upload_mb,
        max_pixels=int(args.max_megapixels * 1e6),
        max_faces=args.max_faces,
        max_queue=args.max_queue,
        wait_ms=args.batch_wait_ms,
    )
    server = build_server(pipeline, limits, users=users, mark=mark)
    # The model and the page are long-lived: out of the collector's way (no full scans of
    # them while serving, and no minutes-long collection of them when Ctrl+C ends the process).
    gc.collect()
    gc.freeze()
    where = f"http://{args.host if ':' not in args.host else '[' + args.host + ']'}:{args.port}"
    print(
        f"sam-age serve: model on {pipeline.device}; demo {where}/ , API {where}/v1 (docs {where}/docs)"
        f"{', credentials required' if users else ''} (Ctrl+C stops)",
        file=sys.stderr,
    )
    if args.share:
        _share(args.host, args.port)
    try:
        serve(server, host=args.host, port=args.port)
    except OSError as e:  # taken since the check, or an address this machine does not have
        if e.errno == errno.EADDRINUSE or "port" in str(e).lower() or "serve on" in str(e):
            raise UsageError(busy_message(args.host, args.port)) from None
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
    print("sam-age serve: stopped", file=sys.stderr)
    return EXIT_OK


def start_weights(args):
    """``(age_predictor, identity)`` for the pipeline the page and the API share: the
    weights flags given, resolved now (a missing file or an unavailable name: exit 2 before
    the model loads; a file is never fetched), so no request waits on a download; a flag
    not given stays the registry's default, fetched at the first request that needs it."""
    age_predictor = identity = None
    if args.age_predictor_weights is not None:
        from ..estimate import resolve_age_predictor

        age_predictor = resolve_age_predictor(args.age_predictor_weights, progress=True)
    if args.curricular_face_weights is not None or args.ir_se50_weights is not None:
        identity = identity_option(args, "serve")
    return age_predictor, identity


def _share(host: str, port: int) -> None:
    """A temporary public link through Gradio's share service (best effort: one line when
    it cannot be made). The link reaches the same server, credentials included."""
    try:
        import secrets

        from gradio import networking

        url = networking.setup_tunnel(
            local_host="127.0.0.1" if host in ("0.0.0.0", "::") else host,
            local_port=port,
            share_token=secrets.token_urlsafe(32),
            share_server_address=None,
            share_server_tls_certificate=None,
        )
        print(f"sam-age serve: public link {url}", file=sys.stderr)
    except Exception as e:  # no internet, no frpc binary, an API change
        print(f"sam-age serve: no public link ({' '.join(str(e).split())[:160]})", file=sys.stderr)


def busy_message(host: str, port: int) -> str:
    return f"port {port} on {host} is in use (another server?); choose another with --port N"


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` for a moment (as the server will, with SO_REUSEADDR) before the
    model loads: a busy port or an address this machine lacks is a usage error now,
    with our flag's name in it, rather than Gradio's advice after a long load."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: cannot listen there ({e.strerror or e})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(busy_message(host, port)) from None
            raise UsageError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
