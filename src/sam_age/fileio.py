"""Files written so that nothing the user had is lost (floor 1: stdlib only).

Invariant: a file this package writes either appears whole under its final name or not at
all. Every writer goes through a temporary file in the target's own folder (same file
system, so the final ``os.replace`` is atomic), flushed and fsync'ed before the rename; a
crash or an exception leaves the old file (if any) untouched and no temporary behind.

The file gets the mode a plain ``open(path, "w")`` would give it: an existing file's mode
is kept, a new file gets ``0o666 & ~umask`` (0644 under umask 022), not ``mkstemp``'s
private 0600. A write error (disk full, quota, read-only) is re-raised as an ``OSError``
whose ``filename`` is the target (never the temporary), so the one-line message the CLI
prints names the file the user asked for.

:func:`format_size` is the one human-readable byte count of the package (weights tables,
manual-steps messages).
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, without changing it where the OS can tell (Linux: /proc);
    elsewhere set and restore it under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode(path: PathLike) -> int:
    """The permission bits ``open(path, "w")`` would leave: an existing file keeps its
    own, a new one gets ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name (when it names none, or the temporary)."""
    if error.filename is not None and not Path(str(error.filename)).name.startswith(f".{path.name}."):
        return error
    return OSError(error.errno, error.strerror or str(error) or type(error).__name__, str(path))


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, then rename it over
    ``path``: a crash never leaves a half-written file where a good one was. The file
    gets :func:`new_file_mode`; an ``OSError`` names ``path`` (see the module docstring)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = new_file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            else:  # pragma: no cover (Windows before 3.13)
                os.chmod(tmp, mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        named = _naming(e, path) if isinstance(e, OSError) else e
        if named is e:
            raise
        raise named from e
    return path


@contextlib.contextmanager
def atomic_dir(path: PathLike, replace: bool = False) -> Iterator[Path]:
    """Build a folder beside ``path`` (``.NAME.XXXX.partial``, same file system) and move
    it into place whole when the block ends; an exception removes it and leaves ``path``
    as it was. An existing ``path`` is taken over when it is an empty folder; otherwise
    ``FileExistsError`` unless ``replace``: then the old one is renamed aside, the new
    one in, and the old one deleted, so ``path`` never holds a mix of old and new files.
    The folder gets the mode ``mkdir`` would give it (``0o777 & ~umask``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        os.chmod(stage, 0o777 & ~current_umask())
        yield stage
        _swap_in(stage, path, replace)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _swap_in(stage: Path, path: Path, replace: bool) -> None:
    if not os.path.lexists(path):
        os.replace(stage, path)
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()  # an empty folder (made by hand, or by an earlier failed run)
        os.replace(stage, path)
        return
    if not replace:
        raise FileExistsError(errno.EEXIST, "already exists", str(path))
    old = stage.with_name(stage.name[:-len(".partial")] + ".old")
    os.replace(path, old)
    try:
        os.replace(stage, path)
    except BaseException:
        os.replace(old, path)  # put the old result back
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


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
