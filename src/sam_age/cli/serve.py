"""``sam-age serve``: the web demo on Gradio's server (``pip install 'sam-age[web]'``).

    sam-age serve --checkpoint sam_ffhq_aging --port 7860

The model is loaded once, before the server starts; visitors share it through Gradio's queue.
"""
from __future__ import annotations

import argparse
import errno
import socket
import sys

from ..errors import EXIT_OK, UsageError
from .common import (add_age_predictor_argument, add_batch_size_argument, add_checkpoint_argument,
                     add_device_arguments, add_mark_arguments, check_batch_size, check_device, resolve_mark)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="run the web demo (Gradio)",
        description="Serve a web page where a visitor uploads a portrait (or takes the bundled "
                    "sample) and sees it at other ages: a strip, a gallery per face, an "
                    "animation and the photo with the aged face pasted back.")
    add_checkpoint_argument(p)
    add_age_predictor_argument(p)  # for "+N years" (loaded at the first such request)
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: everyone)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true",
                   help="also open a temporary public *.gradio.live link (needs the internet)")
    p.add_argument("--max-upload-mb", dest="max_upload_mb", type=float, default=20.0, metavar="N",
                   help="refuse uploads larger than this (default 20)")
    add_mark_arguments(p)  # --no-mark, --sign-cert, --sign-key: every download is marked (and signed)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    check_batch_size(args.batch_size)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1..65535, not {args.port}")
    if args.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be positive, not {args.max_upload_mb:g}")
    check_device(args.device)
    mark = resolve_mark(args, "serve")  # a certificate c2pa refuses: exit 2 before the model loads
    check_port(args.host, args.port)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError("the web demo needs Gradio: pip install 'sam-age[web]'") from None

    from ..pipeline import AgePipeline
    from ..web import build_app, launch

    pipeline = AgePipeline.from_pretrained(args.checkpoint, device=args.device, dtype=args.dtype,
                                           batch_size=args.batch_size, progress=True,
                                           age_predictor=args.age_predictor_weights)
    demo = build_app(pipeline, max_upload_mb=args.max_upload_mb, mark=mark)
    print(f"sam-age serve: model on {pipeline.device}; open http://{args.host}:{args.port} "
          "(Ctrl+C stops)", file=sys.stderr)
    try:
        launch(demo, host=args.host, port=args.port, share=args.share,
               max_upload_mb=args.max_upload_mb, block=True,
               quiet=not args.share)  # our line above says where; Gradio's would say share=True
    except OSError as e:  # taken since the check, or an address this machine does not have
        if e.errno == errno.EADDRINUSE or "port" in str(e).lower():
            raise UsageError(busy_message(args.host, args.port)) from None
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
    return EXIT_OK


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
