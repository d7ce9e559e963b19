"""The weights cache: where official files live on this machine, and how a weights flag
(a path or a registry name) becomes a file.

Cache folder: ``$SAM_AGE_HOME`` if set, else the platform cache (``$XDG_CACHE_HOME/sam-age``
or ``~/.cache/sam-age`` on Linux, ``~/Library/Caches/sam-age`` on macOS,
``%LOCALAPPDATA%\\sam-age`` on Windows). ``manifest.json`` in it records, per registry name,
the file, its sha256 and where it came from, so ``weights verify`` can tell later whether a
file changed. ``SAM_AGE_OFFLINE=1`` turns every download off.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

from ..errors import CheckpointError, UsageError, WeightsUnavailableError
from ..fileio import copy_file, format_size, write_text
from . import registry
from .download import DownloadError, download, sha256_of
from .registry import WeightsFile, package_file

PathLike = Union[str, "os.PathLike[str]"]
MANIFEST = "manifest.json"
DEFAULT_TIMEOUT = 30.0


# -- where things are ----------------------------------------------------------------------

def cache_dir() -> Path:
    home = os.environ.get("SAM_AGE_HOME")
    if home:
        return Path(home).expanduser()
    return platform_cache_dir()


def platform_cache_dir(system: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                       home: Optional[Path] = None) -> Path:
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


def record(entry: WeightsFile, path: Path, sha256: str, source: str,
           loaded: Optional[bool] = None) -> dict:
    """Remember ``path``'s checksum (and whether a loader accepted it) in the manifest."""
    data = read_manifest()
    st = path.stat()
    rec = {"file": path.name, "sha256": sha256, "size": st.st_size, "mtime": st.st_mtime,
           "source": source, "loaded": loaded,
           "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
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
    return f", {format_size(entry.size, approx=True)}" if entry.size else ""


def manual_steps(entry: WeightsFile, reason: str = "") -> str:
    """One line telling a user how to install ``entry`` by hand."""
    folder = cache_dir()
    why = f" ({reason.rstrip('.')})" if reason else ""
    if entry.packaged:
        shipped = " or ".join(f"{pkg}/{inner}" for pkg, inner in entry.packaged_in)
        return (f"{entry.name} ({entry.filename}) ships inside {shipped}, and no such file is installed "
                f"here{why}: run `pip install {_pip_name(entry)}`, or get {entry.filename} by hand "
                f"and run `sam-age weights import FILE --name {entry.name}`")
    where = " or ".join(entry.urls) or "the SAM authors' release page"
    return (f"{entry.name} ({entry.filename}{_size_text(entry)}) is not in the weights cache {folder} and "
            f"could not be downloaded{why}. Manual steps: download it from {where} on a machine with "
            f"network access, then run `sam-age weights import FILE --name {entry.name}` (or copy it to "
            f"{folder / entry.filename}; set SAM_AGE_HOME to use another cache folder, or "
            f"{entry.env_url} to download from a mirror)")


def _pip_name(entry: WeightsFile) -> str:
    # lpips depends on torchvision, which this package does not need
    return {"lpips": "--no-deps lpips", "face_recognition_models": "face-recognition-models"}.get(
        entry.package, entry.package)


# -- flag value -> file --------------------------------------------------------------------

def urls_for(entry: WeightsFile, url: Optional[str] = None) -> List[str]:
    """``url`` argument, then ``$SAM_AGE_URL_<NAME>``, then the published sources."""
    if url:
        return [url]
    env = os.environ.get(entry.env_url, "").strip()
    return [env] if env else list(entry.urls)


def fetch(name: str, *, url: Optional[str] = None, progress: bool = True,
          timeout: float = DEFAULT_TIMEOUT, force: bool = False) -> Path:
    """Download registry file ``name`` into the cache (unless there already, or ``force``)."""
    entry = registry.get(name)
    have = cached_file(entry)
    if have is not None and not force:
        return have
    if entry.packaged:
        raise WeightsUnavailableError(manual_steps(entry))
    urls = urls_for(entry, url)
    if not urls:
        raise WeightsUnavailableError(manual_steps(entry, "no download URL is known"))
    dest = cache_dir() / entry.filename
    try:
        dest, digest = download(urls, dest, sha256=entry.sha256, sha256_prefix=entry.sha256_prefix,
                                progress=progress, timeout=timeout)
    except DownloadError as e:
        raise WeightsUnavailableError(manual_steps(entry, str(e))) from None
    record(entry, dest, digest, source=urls[0])
    return dest


def resolve_weights(value: Optional[PathLike], default: Optional[str] = None, *, download: bool = True,
                    progress: bool = True, url: Optional[str] = None,
                    timeout: float = DEFAULT_TIMEOUT) -> Path:
    """What every weights flag does with its value: the one resolver of the package.

    ``value`` is the flag's value; ``None`` (flag not given) means the registry name
    ``default``. An existing path is returned as is. A registry name (``sam_ffhq_aging``,
    ...) gives the cached file, downloaded first when missing and ``download`` is allowed
    (and ``SAM_AGE_OFFLINE`` is not set). Otherwise :class:`WeightsUnavailableError` (exit 2)
    with the manual steps, or :class:`CheckpointError` "file not found"."""
    name_or_path = default if value is None else value
    if name_or_path is None or str(name_or_path).strip() == "":
        raise UsageError("no weights file given")
    path = Path(name_or_path).expanduser()
    entry = registry.lookup(str(name_or_path))
    if path.is_file() or (path.exists() and entry is None):  # a folder named like an entry is not it
        return path
    if entry is None:
        raise CheckpointError(f"file not found (and not a weights name: {', '.join(registry.names())})", path)
    have = cached_file(entry)
    if have is not None:
        return have
    if entry.packaged:
        raise WeightsUnavailableError(manual_steps(entry))
    if not download or offline():
        reason = "downloads are turned off (SAM_AGE_OFFLINE)" if offline() else "downloads are turned off"
        raise WeightsUnavailableError(manual_steps(entry, reason))
    return fetch(entry.name, url=url, progress=progress, timeout=timeout)


# ``resolve_checkpoint(x)`` is ``resolve_weights(x)``: the name the first API gave it.
resolve_checkpoint = resolve_weights


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
            raise CheckpointError(f"dlib cannot read it ({str(e).splitlines()[0][:120]})", path) from None
        return "dlib.shape_predictor"
    from .. import checkpoints  # same floor (3); imported here so that `weights list` needs no torch
    getattr(checkpoints, entry.loader)(path)
    return entry.loader


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
    """sha256 against the registry and the manifest, then (``load``) the matching loader."""
    entry = registry.get(name)
    path = cached_file(entry)
    if path is None:
        return Report(entry.name, None, False, "not in the cache (run `sam-age weights download "
                                               f"{entry.name}` or `weights import`)")
    digest = sha256_of(path)
    report = Report(entry.name, path, True, sha256=digest)
    official = entry.matches_checksum(digest)
    if official is False:
        report.ok, report.problem = False, (f"sha256 {digest} does not match the published "
                                            f"{entry.sha256 or entry.sha256_prefix + '...'}")
        return report
    report.checks.append("sha256 matches the published one" if official else "sha256 computed")
    rec = read_manifest().get(entry.name) if not _in_package(entry, path) else None
    if rec and rec.get("file") == path.name and rec.get("sha256") and rec["sha256"] != digest:
        report.ok, report.problem = False, (f"file changed since it was recorded (sha256 {digest}, "
                                            f"recorded {rec['sha256']}); import it again")
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
        record(entry, path, digest, source=(rec or {}).get("source", "found in cache"),
               loaded=True if load else (rec or {}).get("loaded"))
    return report


def _in_package(entry: WeightsFile, path: Path) -> bool:
    return entry.packaged and path == package_file(entry)


def status(entry: WeightsFile) -> dict:
    """Cheap facts for ``weights list`` (no hashing): path, size, and whether the manifest
    vouches for the file as it is now."""
    path = cached_file(entry)
    rec = read_manifest().get(entry.name) or {}
    out = {"name": entry.name, "file": entry.filename, "kind": entry.kind, "path": None,
           "size": entry.size, "cached": False, "verified": "-", "sha256": entry.sha256 or rec.get("sha256"),
           "licence": entry.licence, "source": entry.source, "used_for": entry.used_for,
           "flag": entry.flag}
    if path is None:
        return out
    st = path.stat()
    out.update(path=str(path), size=st.st_size, cached=True)
    if _in_package(entry, path):
        out["verified"] = "packaged"
    elif rec.get("file") == path.name and rec.get("size") == st.st_size and rec.get("mtime") == st.st_mtime:
        out["verified"] = "yes" if rec.get("loaded") else "sha256"
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


def import_file(src: PathLike, name: str, *, mode: str = "copy", overwrite: bool = False,
                check: bool = True) -> Path:
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
        raise CheckpointError(f"sha256 {digest} does not match the published "
                              f"{entry.sha256 or entry.sha256_prefix + '...'} for {entry.name}; "
                              "pass the file's path to the weights flag instead", src)
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
