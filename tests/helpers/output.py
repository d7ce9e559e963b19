"""What a command wrote, as the CLI tests read it: its non-blank lines, a file's mode bits,
and a stderr that says it is a terminal (tqdm draws its bar only on one)."""

from __future__ import annotations

import io
import stat
from pathlib import Path


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


class TTY(io.StringIO):
    """stderr as a terminal (tqdm shows its bar only on one)."""

    def isatty(self):
        return True


def age_args(weights, out, *inputs, extra=()) -> list:
    """``sam-age age INPUTS`` at one age (30) on the CPU, without worker processes, into
    ``out``: the command line the dataset tests run; ``extra`` adds or overrides flags."""
    return [
        "age",
        *map(str, inputs),
        "--checkpoint",
        str(weights),
        "--ages",
        "30",
        "--output",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "0",
        *extra,
    ]
