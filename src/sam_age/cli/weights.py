"""``sam-age weights list|download|verify|import|convert``: the official files on this machine.

Exit codes: 0 ok; 1 some files failed (download/verify/import of several); 2 usage error,
or nothing could be done (offline, unknown name, bad file).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE
from ..fileio import format_size


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "weights", help="list, download, verify, import or convert the pretrained files",
        description="Manage the official pretrained files in the cache ($SAM_AGE_HOME or the "
                    "platform cache folder). Every weights flag of every command also takes "
                    "the registry names shown by `sam-age weights list`.")
    parser.set_defaults(run=lambda args: (parser.print_help(sys.stderr), EXIT_USAGE)[1])
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION",
                                parser_class=type(parser))

    p = sub.add_parser("list", help="the registry and what is cached")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run_list)

    p = sub.add_parser("download", help="fetch files into the cache (resumable)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--url", help="download from this URL instead (one NAME only); "
                                 "also $SAM_AGE_URL_<NAME>")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_download)

    p = sub.add_parser("verify", help="check sha256 and load each cached file")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every cached file")
    p.add_argument("--no-load", action="store_true", help="checksums only, skip the load check")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_verify)

    p = sub.add_parser("import", help="put a file you fetched by hand into the cache")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", required=True, help="registry name, e.g. sam_ffhq_aging")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--copy", dest="mode", action="store_const", const="copy",
                      help="copy FILE into the cache (default)")
    mode.add_argument("--move", dest="mode", action="store_const", const="move",
                      help="move FILE into the cache")
    mode.add_argument("--link", dest="mode", action="store_const", const="link",
                      help="symlink to FILE from the cache")
    p.add_argument("--overwrite", action="store_true", help="replace a different cached file")
    p.set_defaults(run=run_import, mode="copy")

    p = sub.add_parser("convert", help="SAM .pt/.pdparams -> .safetensors (or .pt)")
    p.add_argument("source", metavar="SRC", help="SAM checkpoint path or registry name")
    p.add_argument("--output", required=True, help="output file, or a folder for SRC's name")
    p.add_argument("--format", choices=("safetensors", "pt"), default=None,
                   help="default: from --output's suffix, else safetensors")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run_convert)
    return parser


def run_list(args) -> int:
    from ..weights import registry, store
    rows = [store.status(entry) for entry in registry.REGISTRY]
    if args.json:
        print(json.dumps({"cache": str(store.cache_dir()), "files": rows}, indent=2))
        return EXIT_OK
    table = [("NAME", "FILE", "SIZE", "CACHED", "VERIFIED", "LICENCE", "SOURCE")]
    table += [(r["name"], r["file"], format_size(r["size"]), "yes" if r["cached"] else "no", r["verified"],
               r["licence"], r["source"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"cache: {store.cache_dir()}")
    return EXIT_OK


def _outcome(failed: int, total: int) -> int:
    if not failed:
        return EXIT_OK
    return EXIT_USAGE if failed == total else EXIT_SOME_FAILED


def run_download(args) -> int:
    from ..errors import SamAgeError, UsageError
    from ..weights import registry, store
    if args.url and len(args.names) != 1:
        raise UsageError("--url needs exactly one NAME")
    entries = [registry.get(n) for n in args.names]  # unknown names stop before any transfer
    failed = 0
    for entry in entries:
        try:
            path = store.fetch(entry.name, url=args.url, progress=not args.no_progress,
                               timeout=args.timeout, force=args.force)
            print(f"ok   {entry.name}  {path}")
        except SamAgeError as e:
            failed += 1
            print(f"sam-age weights download: error: {e}", file=sys.stderr)
    return _outcome(failed, len(entries))


def run_verify(args) -> int:
    from ..weights import registry, store
    if args.names:
        entries = [registry.get(n) for n in args.names]
    else:
        entries = [e for e in registry.REGISTRY if store.cached_file(e) is not None]
        if not entries:
            print(f"nothing cached in {store.cache_dir()}", file=sys.stderr)
            return EXIT_OK
    reports = [store.verify(e.name, load=not args.no_load) for e in entries]
    if args.json:
        print(json.dumps([{"name": r.name, "path": str(r.path) if r.path else None, "ok": r.ok,
                           "problem": r.problem, "sha256": r.sha256, "checks": r.checks}
                          for r in reports], indent=2))
    else:
        for r in reports:
            if r.ok:
                print(f"ok   {r.name}  {r.path}  ({'; '.join(r.checks)})")
            else:
                print(f"bad  {r.name}  {r.path or '-'}: {r.problem}")
    return EXIT_SOME_FAILED if any(not r.ok for r in reports) else EXIT_OK


def run_import(args) -> int:
    from ..weights import store
    dest = store.import_file(args.file, args.name, mode=args.mode, overwrite=args.overwrite)
    print(f"ok   {args.name}  {dest}")
    return EXIT_OK


def run_convert(args) -> int:
    from ..checkpoints import load_sam, save_sam
    from ..errors import UsageError
    from ..weights import store
    src = store.resolve_weights(args.source, download=False)
    out = Path(args.output).expanduser()
    fmt = args.format or ("pt" if out.suffix in (".pt", ".pth") else "safetensors")
    if out.is_dir() or not out.suffix or str(args.output).endswith(("/", "\\")):
        out = out / f"{src.stem}.{fmt}"
    elif out.suffix.lstrip(".") not in (fmt, "pth" if fmt == "pt" else fmt):
        raise UsageError(f"--output {out} does not end in .{fmt}")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    if out.resolve() == src.resolve():
        raise UsageError(f"--output {out} is the source file")
    model = load_sam(src)
    save_sam(model, out)
    print(f"ok   {src} -> {out}")
    return EXIT_OK
