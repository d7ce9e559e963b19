"""The record of an ``age`` run: ``OUT/manifest.jsonl``, one JSON line per input.

A line (the merged manifest; ``files`` are relative to ``OUT``, ``time`` is UTC)::

    {"input": "/data/in/a.jpg", "name": "a", "status": "ok", "reason": null, "faces": 1,
     "scores": [1.52], "requested": ["30", "+20"], "ages": [[30.0, 57.4]],
     "estimated_ages": [37.42], "clamped": [], "files": ["a/age_030.png", ...],
     "seconds": 3.41, "request": {...}, "rank": 0, "world": 2, "host": "node1",
     "time": "2026-11-25T17:20:01.123456Z"}

(``requested``: the ages as asked; ``ages``: the ages made, per face; with relative ages
also ``estimated_ages`` and ``clamped``, as :func:`sam_age.results.relative_report`.)

``status`` is ``ok``, ``failed`` (unreadable file, write error, ...), ``no-face``, or
``interrupted`` (begun by a run that was stopped before the result was recorded; the next
run redoes it). ``request`` is what was asked (ages and every option that changes the
files, see :class:`sam_age.dataset.outputs.Request`); a re-run with the same request skips
the inputs whose line says ``ok``.

How several processes write it without waiting on each other:

* Each process appends to its own *part*, ``OUT/.sam-age/parts/HOST-PID-rRANK-ID.jsonl``,
  and holds an exclusive ``flock`` on it while it runs. Lines are buffered per batch and
  written with one ``fsync`` (:meth:`PartWriter.commit`), so a process killed with
  SIGKILL loses at most the batch in flight, and a line is either whole or (the last
  one, cut by the kill) skipped by the reader.
* Before a batch's files are written, a ``started`` line per input is committed: a result
  found on disk afterwards is known to be this run's own (same request), so the next run
  may replace it instead of refusing to touch it.
* A part that finishes is renamed ``*.done.jsonl`` (:meth:`PartWriter.close`).
* :func:`merge` folds every part and the old manifest into a new ``manifest.jsonl``
  (written to a temporary file, fsync'ed, renamed: readers see the old or the new file,
  never half of one), then deletes the parts it no longer needs: the done ones, and the
  open ones whose writer is dead (their lock can be taken; the kernel drops a dead
  process's locks, SIGKILL included). A live writer's part is read but kept.
* On a file system without ``flock`` (some network mounts), every open part counts as
  live: merged, never deleted, until its writer marks it done.
* Merging is idempotent, and one merge runs at a time (``OUT/.sam-age/merge.lock``, held
  for the seconds a merge takes): otherwise a merge that read a part before it was done
  could write its older manifest over the one of a merge that read the part whole and
  deleted it.
* For one input, the line with the latest ``time`` wins (a final status over ``started``
  at the same instant).

Any name the OS allows round-trips: the file is UTF-8 JSON (valid Unicode only). An input
path that is not valid Unicode (bytes that are not UTF-8, kept by Python as lone
surrogates) is written ``"input": "/in/caf\\xe9.jpg"`` (readable, not exact) beside
``"input_bytes": "2f696e2f636166e92e6a7067"`` (the exact bytes, hex), and read back
(:func:`record_key`) as the path ``os.fsdecode`` gives; any other text that is not valid
Unicode (a reason naming such a file) is written with the bytes escaped
(:func:`sam_age.fileio.shown`). A record's key is :func:`record_key`, never ``input``
alone.

One run per output folder at a time: two live runs into the same ``OUT`` are not refused,
but their records may contradict each other.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

from ..fileio import atomic_write, shown

try:  # POSIX; without it (Windows) an open part counts as live until merged by its writer
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None

MANIFEST = "manifest.jsonl"
STATE_DIR = ".sam-age"  # hidden working state inside OUT: parts and staging folders
OK, FAILED, NO_FACE, STARTED, INTERRUPTED = "ok", "failed", "no-face", "started", "interrupted"
FINAL = (OK, FAILED, NO_FACE)
_DONE_SUFFIX = ".done.jsonl"


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _clean(value):
    """``value`` with every text that is not valid Unicode escaped (:func:`shown`)."""
    if isinstance(value, str):
        return value if _valid_text(value) else shown(value)
    if isinstance(value, dict):
        return {(k if _valid_text(k) else shown(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def encode_record(rec: dict) -> str:
    """One manifest line (with its newline): valid UTF-8 JSON whatever the input's name
    (``input_bytes`` when the path is not valid Unicode, see the module docstring)."""
    rec = dict(rec)
    key = rec.get("input")
    if isinstance(key, str) and not _valid_text(key):
        rec["input_bytes"] = os.fsencode(key).hex()
    elif isinstance(key, str):
        rec.pop("input_bytes", None)
    return json.dumps(_clean(rec), ensure_ascii=False, separators=(",", ":")) + "\n"


def input_record(
    item, status: str, request, *, reason=None, files=(), faces=0, scores=(), seconds=0.0, **extra
) -> dict:
    """One input's manifest line, the fields every dataset command writes (``age`` and
    ``align``): ``item`` (a :class:`~sam_age.dataset.listing.Item`), its outcome, the files it
    made (relative to OUT), its faces' detector scores and the request; ``extra`` (e.g. the
    ages asked and made) goes between the scores and the files."""
    return {
        "input": item.key,
        "name": item.name,
        "status": status,
        "reason": reason,
        "faces": faces,
        "scores": [round(float(s), 4) for s in scores],
        **extra,
        "files": list(files),
        "seconds": round(float(seconds), 3),
        "request": request.to_json(),
    }


def record_key(rec: dict) -> str:
    """The input's path as this process names it (``input_bytes`` when present)."""
    raw = rec.get("input_bytes")
    if isinstance(raw, str):
        try:
            return os.fsdecode(bytes.fromhex(raw))
        except ValueError:
            pass
    return rec["input"]


def now() -> str:
    """UTC time with microseconds, fixed width: sorts as text in time order."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parts_dir(out: Path) -> Path:
    return Path(out) / STATE_DIR / "parts"


def staging_root(out: Path) -> Path:
    return Path(out) / STATE_DIR / "staging"


# -- writing --------------------------------------------------------------------------------


class PartWriter:
    """This process's part file: ``add`` lines, ``commit`` them (one fsync), ``close``."""

    def __init__(self, out: Path, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world
        self.host = socket.gethostname()
        self.stem = f"{self.host}-{os.getpid()}-r{rank}-{uuid.uuid4().hex[:8]}"
        folder = parts_dir(out)
        self.path = folder / f"{self.stem}.jsonl"
        # Locked under another name first, then renamed: a merge never sees the part unlocked
        # (it would take it for a dead writer's and delete it).
        making = folder / f"{self.stem}.new"
        for attempt in range(5):  # a merge elsewhere may remove the folder or the file meanwhile
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._f = open(making, "a", encoding="utf-8")
                if fcntl is not None:
                    try:
                        fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:  # a file system without locks: merges keep this part (never lose it)
                        pass
                os.replace(making, self.path)
                break
            except FileNotFoundError:
                if getattr(self, "_f", None) is not None:
                    self._f.close()
                if attempt == 4:
                    raise
        self._pending: List[str] = []
        self.closed = False

    def add(self, record: dict) -> None:
        rec = dict(record, rank=self.rank, world=self.world, host=self.host, time=now())
        self._pending.append(encode_record(rec))

    def commit(self) -> None:
        if not self._pending:
            return
        self._f.write("".join(self._pending))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._pending.clear()

    def close(self) -> None:
        """Commit what is pending and mark the part done (its lines are final)."""
        if self.closed:
            return
        try:
            self.commit()
        finally:
            self.closed = True
            done = self.path.with_name(self.stem + _DONE_SUFFIX)
            os.replace(self.path, done)
            self.path = done
            self._f.close()  # releases the lock


# -- reading --------------------------------------------------------------------------------


def read_lines(path: Path) -> Iterator[dict]:
    """The whole JSON lines of ``path``; a line cut by a kill (or garbage) is skipped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:  # (a damaged byte spoils one line, at most)
            for line in f:
                if not line.endswith("\n"):
                    break  # the last line of a part whose writer was killed mid-write
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                    yield rec
    except FileNotFoundError:
        return


def _rank_key(rec: dict):
    return (str(rec.get("time", "")), rec.get("status") in FINAL)


def latest(records: Iterable[dict]) -> Dict[str, dict]:
    """``{input: the record that wins}`` (latest time; final over started)."""
    best: Dict[str, dict] = {}
    for rec in records:
        key = record_key(rec)
        if key not in best or _rank_key(rec) >= _rank_key(best[key]):
            best[key] = rec
    return best


def read_state(out: Path) -> Dict[str, dict]:
    """What ``OUT`` holds according to its manifest and every part (live ones included)."""
    recs: List[dict] = []
    folder = parts_dir(out)
    if folder.is_dir():
        for part in sorted(folder.glob("*.jsonl")):
            recs.extend(read_lines(part))
    recs.extend(read_lines(Path(out) / MANIFEST))
    return latest(recs)


# -- merging --------------------------------------------------------------------------------


def _take_if_dead(path: Path):
    """An open file holding ``path``'s lock if its writer is gone, else None (live)."""
    if fcntl is None:
        return None
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _dead(path: Path) -> bool:
    f = _take_if_dead(path)
    if f is None:
        return False
    f.close()
    return True


def _final_form(rec: dict) -> dict:
    if rec.get("status") == STARTED:
        rec = dict(rec, status=INTERRUPTED, reason="stopped before its result was recorded; the next run redoes it")
    return rec


MERGE_LOCK_WAIT = 600.0  # seconds one merge waits for another (a merge takes seconds)


@contextlib.contextmanager
def _merge_lock(out: Path):
    """Hold ``OUT/.sam-age/merge.lock`` (``flock``) while merging -> True; False where the
    file system has no locks (then the merge deletes nothing). The holder may delete the
    lock file: a waiter that then gets a lock on the deleted file tries again."""
    if fcntl is None:
        yield False
        return
    path = Path(out) / STATE_DIR / "merge.lock"
    deadline = time.monotonic() + MERGE_LOCK_WAIT
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder went away meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: another merge has held this lock for {MERGE_LOCK_WAIT:.0f} s") from None
            time.sleep(0.05)
            continue
        except OSError:  # no locks on this file system
            os.close(fd)
            yield False
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # locked a lock file that its holder had just deleted
            os.close(fd)
            continue
        try:
            yield True
        finally:
            os.close(fd)
        return


def merge(out: Path, own: Optional[Path] = None) -> Path:
    """Fold the parts into ``OUT/manifest.jsonl`` (atomically) and delete the parts whose
    lines it now holds and whose writers are done or dead. ``own``: this process's open
    part, if any (never taken for dead). One merge at a time (a lock), so that a merge
    never writes a manifest older than one whose parts another merge deleted. Returns the
    manifest's path."""
    out = Path(out)
    with _merge_lock(out) as locked:
        return _merge(out, own, may_delete=locked)


def _merge(out: Path, own: Optional[Path], may_delete: bool) -> Path:
    folder = parts_dir(out)
    parts = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    removable, held, live_stems = [], [], set()
    for part in parts:
        if part.name.endswith(_DONE_SUFFIX):
            removable.append(part)
            continue
        lock = None if own is not None and part == Path(own) else _take_if_dead(part)
        if lock is None:
            live_stems.add(part.name[: -len(".jsonl")])
        else:
            held.append(lock)
            removable.append(part)
    try:
        recs: List[dict] = []
        for part in parts:
            recs.extend(read_lines(part))
        recs.extend(read_lines(out / MANIFEST))
        merged = sorted(latest(recs).items())
        text = "".join(encode_record(_final_form(dict(r, input=key))) for key, r in merged)
        path = out / MANIFEST
        try:
            same = path.read_bytes() == text.encode("utf-8")
        except FileNotFoundError:
            same = False
        if not same:  # (a run that added nothing leaves the file as it was)
            atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        if may_delete:
            for part in removable:
                try:
                    part.unlink()
                except FileNotFoundError:
                    pass
    finally:
        for f in held:
            f.close()
    if may_delete:
        _remove_stale_state(out, live_stems)
    return path


def _remove_stale_state(out: Path, live_stems: set) -> None:
    """Staging folders of dead or finished writers; then, when nothing is left, the state
    folder itself (the merge lock last, still held: see :func:`_merge_lock`)."""
    root = staging_root(out)
    if root.is_dir():
        for d in root.iterdir():
            part = parts_dir(out) / f"{d.name}.jsonl"
            if d.name in live_stems or (part.exists() and not _dead(part)):  # (a writer that began meanwhile)
                continue
            shutil.rmtree(d, ignore_errors=True)
    folder = parts_dir(out)
    for making in folder.glob("*.new") if folder.is_dir() else []:  # a writer killed while starting
        if _dead(making):
            making.unlink(missing_ok=True)
    for d in (root, parts_dir(out)):
        try:
            d.rmdir()
        except OSError:
            pass
    state = Path(out) / STATE_DIR
    try:
        if {p.name for p in state.iterdir()} == {"merge.lock"}:
            (state / "merge.lock").unlink()
            state.rmdir()
    except OSError:
        pass
