"""``sam-age`` / ``python -m sam_age``: one entry point, subcommands in sibling modules.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int`` and
imports heavy things (torch, gradio, ...) inside ``run`` so that ``--help`` stays fast.
Exit codes, everywhere: 0 ok, 1 some inputs failed, 2 usage or checkpoint error.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from ..errors import SamAgeError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
SUBCOMMANDS = ("age", "mix", "weights", "train", "serve", "evaluate")


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, spelled the same in every command that runs the model."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default: the best available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="compute precision: auto (the device's default fast path) or float32 (the exact path)")


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
        try:
            module = importlib.import_module(f"sam_age.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"sam_age.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None) or not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except SamAgeError as e:
        print(f"sam-age {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"sam-age {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
