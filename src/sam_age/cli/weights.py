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
        "weights",
        help="list, download, verify, import or convert the pretrained files",
        description="Manage the official pretrained files in the cache ($SAM_AGE_HOME or the "
        "platform cache folder). Every weights flag of every command also takes "
        "the registry names shown by `sam-age weights list`.",
    )
    parser.set_defaults(run=lambda args: (parser.print_help(sys.stderr), EXIT_USAGE)[1])
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=type(parser))

    p = sub.add_parser("list", help="the registry, every source of each file, and what is cached")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run_list)

    p = sub.add_parser(
        "download",
        help="fetch files into the cache (verified, resumable, from the next source on failure)",
        description="Fetch registry files into the cache. Each file's sources (`weights list`) are tried "
        "in order until one gives a file that passes every check (not a web page, not far "
        "too small, a zip/pickle checkpoint, the right checksum); each skipped source is "
        "reported on one line. A file already cached is checked as `verify` does.",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument(
        "--source",
        "--url",
        dest="source",
        metavar="hub|drive|URL",
        help="only the Hugging Face Hub mirrors (hub), only Google Drive (drive), or one place: "
        "an http(s) URL or hub:OWNER/REPO[/PATH] (one NAME only); default: every source in "
        "order, or $SAM_AGE_URL_<NAME> when set. The Hub is reached at $HF_ENDPOINT if set.",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="download again even if cached (a bad cached file is replaced only once the new one passed its checks)",
    )
    p.add_argument(
        "--no-load",
        action="store_true",
        help="skip the load check (a file is still checked byte-wise: not a web page, not far "
        "too small, a zip/pickle checkpoint, the right checksum)",
    )
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
    mode.add_argument(
        "--copy", dest="mode", action="store_const", const="copy", help="copy FILE into the cache (default)"
    )
    mode.add_argument("--move", dest="mode", action="store_const", const="move", help="move FILE into the cache")
    mode.add_argument("--link", dest="mode", action="store_const", const="link", help="symlink to FILE from the cache")
    p.add_argument("--overwrite", action="store_true", help="replace a different cached file")
    p.set_defaults(run=run_import, mode="copy")

    p = sub.add_parser("convert", help="SAM .pt/.pdparams -> .safetensors (or .pt)")
    p.add_argument("source", metavar="SRC", help="SAM checkpoint path or registry name")
    p.add_argument("--output", required=True, help="output file, or a folder for SRC's name")
    p.add_argument(
        "--format",
        choices=("safetensors", "pt"),
        default=None,
        help="default: from --output's suffix, else safetensors",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run_convert)
    return parser


def _fix(name: str, path) -> str:
    return f"fix: `sam-age weights download {name} --force`, or delete {path}"


def short_sources(row: dict) -> str:
    """``hub x2, drive``: the kinds of a file's sources, in the order tried (the labels
    and URLs are in ``--json``); a packaged file names its pip package."""
    if row["verified"] == "packaged" or not row["sources"]:
        return row["source"].split("/")[0] if row["source"] != "unknown" else "unknown"
    kinds = []
    for src in row["sources"]:
        kind = src["kind"] if src["kind"] in ("hub", "drive") else src["url"].split("/")[2]
        if kinds and kinds[-1][0] == kind:
            kinds[-1][1] += 1
        else:
            kinds.append([kind, 1])
    return ", ".join(k if n == 1 else f"{k} x{n}" for k, n in kinds)


def size_text(row: dict) -> str:
    """The size as known: exact or reported (``2.3 GB``), estimated from the tensors
    (``~1.2 GB``), or ``unknown`` (never a guess)."""
    if not row["size"]:
        return "unknown"
    return format_size(row["size"], approx=row.get("size_from") == "estimate")


def fit_table(table, width: int, required: int) -> list:
    """Rows of cells -> lines at most ``width`` wide: the first ``required`` columns
    always, each further column only while it fits; the last shown column is cut with
    ``...`` when even the required ones are too wide."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    keep = required
    while keep < len(widths) and sum(widths[: keep + 1]) + 2 * keep <= width:
        keep += 1
    if keep < len(widths) and width - (sum(widths[:keep]) + 2 * keep) >= 16:
        keep += 1  # room for a useful part of one more column: shown cut
    lines = []
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row[: keep - 1], widths)]
        line = "  ".join(cells + [row[keep - 1]])
        if len(line) > width:
            line = line[: max(0, width - 3)] + "..."
        lines.append(line.rstrip())
    return lines


def run_list(args) -> int:
    import shutil
    import textwrap

    from ..weights import registry, store

    rows = [store.status(entry) for entry in registry.REGISTRY]
    if args.json:
        print(json.dumps({"cache": str(store.cache_dir()), "files": rows}, indent=2))
        return EXIT_OK
    width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
    table = [("NAME", "SIZE", "CACHED", "VERIFIED", "SOURCES", "FILE", "LICENCE")]
    table += [
        (
            r["name"],
            size_text(r),
            "yes" if r["cached"] else "no",
            r["verified"],
            short_sources(r),
            r["file"],
            r["licence"],
        )
        for r in rows
    ]
    for line in fit_table(table, width, required=5):
        print(line)
    for r in rows:
        if r["problem"]:
            print(
                textwrap.fill(
                    f"bad  {r['name']}  {r['path']}: {r['problem']}; {_fix(r['name'], r['path'])}",
                    width,
                    subsequent_indent="     ",
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
    print(textwrap.fill(f"cache: {store.cache_dir()}", width, subsequent_indent="  ", break_long_words=False))
    print("every source's URL, the file names and licences: sam-age weights list --json")
    return EXIT_OK


def _outcome(failed: int, total: int) -> int:
    if not failed:
        return EXIT_OK
    return EXIT_USAGE if failed == total else EXIT_SOME_FAILED


def run_download(args) -> int:
    from ..errors import SamAgeError, UsageError
    from ..weights import registry, store

    if args.source and args.source not in ("hub", "drive") and len(args.names) != 1:
        raise UsageError(f"--source {args.source} names one place: give exactly one NAME")
    entries = [registry.get(n) for n in args.names]  # unknown names stop before any transfer
    for entry in entries:
        store.sources_for(entry, args.source)  # so does a --source an entry lacks
    failed = 0
    for entry in entries:
        try:
            path = store.fetch(
                entry.name,
                source=args.source,
                progress=not args.no_progress,
                timeout=args.timeout,
                force=args.force,
                load=not args.no_load,
            )
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
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "path": str(r.path) if r.path else None,
                        "ok": r.ok,
                        "problem": r.problem,
                        "sha256": r.sha256,
                        "checks": r.checks,
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
    else:
        for r in reports:
            if r.ok:
                print(f"ok   {r.name}  {r.path}  ({'; '.join(r.checks)})")
            elif r.path is None:
                print(f"bad  {r.name}  -: {r.problem}")
            else:
                print(f"bad  {r.name}  {r.path}: {r.problem}; {_fix(r.name, r.path)}")
    return EXIT_SOME_FAILED if any(not r.ok for r in reports) else EXIT_OK


def run_import(args) -> int:
    from ..weights import store

    dest = store.import_file(args.file, args.name, mode=args.mode, overwrite=args.overwrite)
    print(f"ok   {args.name}  {dest}")
    return EXIT_OK


def run_convert(args) -> int:
    from ..checkpoints.convert import convert_sam
    from ..errors import UsageError
    from ..weights import store

    src = store.resolve_weights(args.source, download=False, kind="sam")
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
    convert_sam(src, out, fmt)  # streamed: the source mapped, one tensor at a time out
    print(f"ok   {src} -> {out}")
    return EXIT_OK
