"""Files written so that nothing the user had is lost (floor 1: stdlib only).

Invariant: a file this package writes either appears whole under its final name or not at
all. Every writer goes through a temporary file in the target's own folder (same file
system, so the final ``os.replace`` is atomic), flushed and fsync'ed before the rename; a
crash or an exception leaves the old file (if any) untouched and no temporary behind.

:func:`format_size` is the one human-readable byte count of the package (weights tables,
manual-steps messages).
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, then rename it over
    ``path``: a crash never leaves a half-written file where a good one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes(path: PathLike, data: bytes) -> Path:
    """``path.write_bytes(data)``, atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``path.write_text(text)``, atomically."""
    return write_bytes(path, text.encode(encoding))


def copy_file(src: BinaryIO, path: PathLike, chunk: int = 1 << 20) -> Path:
    """Copy an open binary file into ``path``, atomically."""
    return atomic_write(path, lambda out: shutil.copyfileobj(src, out, chunk))


def format_size(n: Optional[float], approx: bool = False) -> str:
    """Bytes -> ``"2.2 GB"`` / ``"233.1 MB"`` / ``"6.0 kB"`` / ``"12 B"`` (decimal units, as
    the files are published); ``"?"`` when unknown. ``approx`` drops the decimal below a GB
    and prefixes ``~`` (a published, rounded size)."""
    if not n:
        return "?"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            if approx:
                return f"~{n / size:.1f} {unit}" if unit == "GB" else f"~{n / size:.0f} {unit}"
            return f"{n / size:.1f} {unit}"
    return f"~{int(n)} B" if approx else f"{int(n)} B"
