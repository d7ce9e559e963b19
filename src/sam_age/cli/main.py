"""``sam-age`` / ``python -m sam_age``: one entry point, subcommands in sibling modules.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int`` and
imports heavy things (torch, gradio, ...) inside ``run`` so that ``--help`` stays fast.
Exit codes, everywhere: 0 ok, 1 some inputs failed, 2 usage or checkpoint error (the named
constants of :mod:`sam_age.errors`); each error class carries its code, mapped here once;
an ``OSError`` that escapes a command (a disk that fills while writing a summary) is one
line naming the file, exit 1.
Shared flags and the per-input loop are in :mod:`sam_age.cli.common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import List, Optional

from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, SamAgeError

SUBCOMMANDS = ("age", "mix", "estimate", "video", "weights", "train", "serve", "evaluate", "export", "align", "inspect")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default exit code is already 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="sam-age", description="Make a face older or younger with SAM.")
    parser.add_argument("--version", action="version", version=f"sam-age {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"sam_age.cli.{name}").add_parser(sub)
    return parser


SIGNED_VALUE_OPTIONS = ("--ages",)  # their values may start with '-' (relative ages: -10,+10)


def join_signed_values(argv: List[str]) -> List[str]:
    """``--ages -10,+10`` -> ``--ages=-10,+10``: argparse reads a value starting with '-'
    as an option unless it is a plain negative number; a '-' then a digit or '.' after
    these options is always their value."""
    out = list(argv)
    for i in range(len(out) - 1):
        nxt = out[i + 1]
        if out[i] in SIGNED_VALUE_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == "."):
            out[i : i + 2] = [f"{out[i]}={nxt}", None]
    return [a for a in out if a is not None]


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"sam-age: warning: {message}\n"


def main(argv: Optional[List[str]] = None) -> int:
    warnings.formatwarning = _one_line_warning  # library warnings (e.g. an emulated --dtype) as one line
    parser = build_parser()
    args = parser.parse_args(join_signed_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "command", None) or not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from ..memory import keep_freed_heap

    keep_freed_heap()  # the application's allocator setting: reused heap blocks, fewer page faults
    try:
        return int(args.run(args) or EXIT_OK)
    except SamAgeError as e:
        print(f"sam-age {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a file we could not write (or read) outside a per-input loop
        where = f"{e.filename}: " if e.filename else ""
        print(f"sam-age {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        print(f"sam-age {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
