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

Results sam-age owns (``--overwrite``): a result folder gets a marker file,
:data:`OWN_MARKER`, listing every file sam-age wrote in it (:func:`mark_own`). Replacing a
folder is allowed only when everything in it is sam-age's own (:func:`foreign_entry`: the
marker's files, plus the ones the caller knows from its records); the old folder is then
emptied file by file (:func:`remove_own`), never with ``rmtree``, so a file the user put
there meanwhile is never deleted. A symbolic link is never followed, replaced or deleted.

:func:`shown` is the one way a path or name reaches a message: control characters and
undecodable bytes escaped, so a line stays one line and printing never raises.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, Set, Union

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


def _discard(tmp, error: BaseException, path: Path) -> BaseException:
    """After a write through the temporary ``tmp`` failed: ``tmp`` removed (if made), and
    the error to raise (an ``OSError`` names ``path``, :func:`_naming`)."""
    if tmp is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return _naming(error, path) if isinstance(error, OSError) else error


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
        named = _discard(tmp, e, path)
        if named is e:
            raise
        raise named from e
    return path


def atomic_link(src: PathLike, path: PathLike) -> bool:
    """Make ``path`` a second name of the file ``src`` (a hard link: the same bytes on disk,
    nothing copied), put in place by rename like :func:`atomic_write`. False, with nothing
    changed, where the file system has no hard links: the caller writes the file itself.
    Safe for files sam-age replaces by rename only: replacing either name later gives that
    name new bytes and leaves the other as it was."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.link"
    try:
        os.link(src, tmp, follow_symlinks=False)
    except (OSError, NotImplementedError):
        return False
    try:
        os.replace(tmp, path)
    except BaseException as e:
        named = _discard(tmp, e, path)
        if named is e:
            raise
        raise named from e
    return True


@contextlib.contextmanager
def atomic_dir(path: PathLike, replace: bool = False, known: Iterable[str] = ()) -> Iterator[Path]:
    """Build a folder beside ``path`` (``.NAME.XXXX.partial``, same file system) and move
    it into place whole when the block ends; an exception removes it and leaves ``path``
    as it was. An existing ``path`` is taken over when it is an empty folder; otherwise
    ``FileExistsError`` unless ``replace``: then, when the old one is sam-age's own
    (:func:`foreign_entry`; else :class:`NotOwnError`, nothing moved), it is renamed aside,
    the new one in, and the old one's own files deleted (:func:`remove_own`), so ``path``
    never holds a mix of old and new files. The new folder gets :data:`OWN_MARKER`.
    The folder gets the mode ``mkdir`` would give it (``0o777 & ~umask``). ``known``: files
    under ``path`` (relative) the caller's records call sam-age's own (:func:`foreign_entry`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        os.chmod(stage, 0o777 & ~current_umask())
        yield stage
        move_in(stage, path, replace, known)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def move_in(stage: PathLike, path: PathLike, replace: bool = False, known: Iterable[str] = ()) -> None:
    """The swap of :func:`atomic_dir`, for a folder ``stage`` already written in full on
    ``path``'s file system: mark it sam-age's own (:data:`OWN_MARKER`) and rename it to
    ``path``. An existing ``path`` is taken over when it is an empty folder; otherwise
    ``FileExistsError`` (``filename``: ``path``) unless ``replace``; then the old folder must
    be sam-age's own (:func:`foreign_entry` with ``known``; else :class:`NotOwnError`,
    nothing moved): it goes aside (beside ``stage``), the new one in, and the old one's own
    files are deleted (:func:`remove_own`). On an error ``stage`` is left to the caller."""
    stage, path = Path(stage), Path(path)
    mark_own(stage)
    if not os.path.lexists(path):
        os.replace(stage, path)
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()  # an empty folder (made by hand, or by an earlier failed run)
        os.replace(stage, path)
        return
    if not replace:
        raise FileExistsError(errno.EEXIST, "already exists", str(path))
    known = list(known)
    foreign = foreign_entry(path, known)
    if foreign is not None:
        raise NotOwnError(path, foreign)
    partial = stage.name.endswith(".partial")  # atomic_dir's; else a caller's staging folder
    old = stage.with_name(stage.name[: -len(".partial")] + ".old" if partial else f".old-{stage.name}")
    os.replace(path, old)
    try:
        os.replace(stage, path)
    except BaseException:
        os.replace(old, path)  # put the old result back
        raise
    remove_own(old, keep_as=path.with_name(f".{path.name}.kept"), known=known)


# -- what sam-age owns -----------------------------------------------------------------------

OWN_MARKER = ".sam-age-result.json"  # in each result folder: the files sam-age wrote there


class NotOwnError(FileExistsError):
    """``path`` is in the way and holds something sam-age did not write (``entry``): it is
    left alone. A ``FileExistsError`` (callers that only refuse need not tell the two apart)."""

    def __init__(self, path: PathLike, entry: PathLike):
        self.path, self.entry = Path(path), Path(entry)
        super().__init__(errno.EEXIST, not_own_message(path, entry), str(path))

    def __str__(self) -> str:
        return self.strerror


def not_own_message(path: PathLike, entry: PathLike) -> str:
    path, entry = Path(path), Path(entry)
    what = (
        "was not written by sam-age for this input"
        if entry == path
        else f"holds {shown(entry)}, which sam-age did not write"
    )
    return f"output {shown(path)} {what}: left alone, even with --overwrite (move it away or choose another --output)"


def _files_under(folder: Path) -> Iterator[str]:
    """Every regular file under ``folder`` (relative, ``/``-separated); links not followed."""
    for root, _dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for f in files:
            yield (rel / f).as_posix()


def mark_own(folder: PathLike) -> Path:
    """Write :data:`OWN_MARKER` in ``folder`` listing every file in it now: call it on a
    folder sam-age has just written in full (a staging folder, before its rename)."""
    folder = Path(folder)
    files = sorted(f for f in _files_under(folder) if f != OWN_MARKER)
    return write_text(folder / OWN_MARKER, json.dumps({"written_by": "sam-age", "files": files}, indent=1) + "\n")


def note_own(folder: PathLike, names: Iterable[str]) -> None:
    """Add ``names`` (files sam-age has just written in ``folder``, a folder it shares with
    the user: ``estimate``'s, ``export``'s, ``video``'s ``--output``) to the folder's
    :data:`OWN_MARKER`, so that ``--overwrite`` may replace them later (:func:`not_own_file`)."""
    folder = Path(folder)
    marker = folder / OWN_MARKER
    if marker.is_symlink() or (os.path.lexists(marker) and not marker.is_file()):
        return  # not ours to write: the files just stay unrecorded
    files = sorted(own_files(folder) | {Path(n).as_posix() for n in names})
    write_text(marker, json.dumps({"written_by": "sam-age", "files": files}, indent=1) + "\n")


def not_own_file(folder: PathLike, names: Iterable[str]) -> Optional[Path]:
    """The first of ``folder/NAME`` (for ``names``) that exists and is not a plain file that
    :data:`OWN_MARKER` lists as sam-age's (see :func:`note_own`), or None: what
    ``--overwrite`` must leave alone."""
    folder = Path(folder)
    own = own_files(folder)
    for n in names:
        p = folder / n
        if os.path.lexists(p) and (Path(n).as_posix() not in own or p.is_symlink() or not p.is_file()):
            return p
    return None


def own_files(folder: PathLike) -> Set[str]:
    """The files :data:`OWN_MARKER` says sam-age wrote in ``folder`` (empty when there is
    no marker, or it is a link or unreadable)."""
    marker = Path(folder) / OWN_MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return set()
        data = json.loads(marker.read_text(encoding="utf-8"))
        files = data.get("files") if isinstance(data, dict) else None
        return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()
    except (OSError, ValueError):
        return set()


def foreign_entry(folder: PathLike, known: Iterable[str] = ()) -> Optional[Path]:
    """The first thing at or under ``folder`` that sam-age did not write, or None when all
    of it is its own (or ``folder`` is absent or an empty folder). Own: the marker, the
    files it lists, the files in ``known`` (relative to ``folder``, from the caller's
    records), and the folders that hold them. A link, a file of another kind, or a folder
    that holds none of these is foreign. Nothing is followed or changed."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        return None
    if folder.is_symlink() or not folder.is_dir():
        return folder
    own = own_files(folder) | set(known)
    if own:
        own.add(OWN_MARKER)
    parents = {p.as_posix() for f in own for p in Path(f).parents} - {"."}
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in sorted(dirs + files):
            r = (rel / name).as_posix()
            p = Path(root) / name
            if p.is_symlink():
                return p
            if name in dirs:
                if r not in parents:
                    return p
            elif r not in own or not p.is_file():
                return p
        dirs.sort()
    return None


def remove_own(folder: PathLike, keep_as: Optional[PathLike] = None, known: Iterable[str] = ()) -> None:
    """Delete what :func:`foreign_entry` calls sam-age's own in ``folder``, file by file,
    then the folders left empty (deepest first). Anything else that appeared meanwhile
    stays; the folder, if not empty then, is renamed ``keep_as`` (when given and free)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return
    own = own_files(folder) | set(known)
    own.add(OWN_MARKER)
    for rel in own - {OWN_MARKER}:  # the marker last (below): it says what is ours
        p = folder / rel
        if p.is_symlink() or not p.is_file():
            continue
        try:
            p.unlink()
        except OSError:
            pass
    for root, _dirs, _files in sorted(os.walk(folder, topdown=False), key=lambda t: -len(Path(t[0]).parts)):
        if Path(root) == folder:
            continue
        try:
            os.rmdir(root)
        except OSError:
            pass
    try:
        if not any(p.name != OWN_MARKER for p in folder.iterdir()):
            (folder / OWN_MARKER).unlink(missing_ok=True)
            folder.rmdir()
            return
    except OSError:
        pass
    if keep_as is not None and not os.path.lexists(keep_as):
        try:
            os.replace(folder, keep_as)
        except OSError:
            pass


def shown(path) -> str:
    """``path`` (a path, bytes or text) for a one-line message: undecodable bytes as
    ``\\xe9``, control characters as ``\\n``, ``\\t``, ``\\x1b``; the rest as it is."""
    if isinstance(path, bytes):
        text = path.decode("utf-8", "backslashreplace")
    else:
        text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


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
