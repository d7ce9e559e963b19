"""Handing back memory that CPU inference no longer reads (peak RSS).

A SAM checkpoint is memory-mapped by ``torch.load(mmap=True)``, so a float32 model's
parameters *are* pages of the file: nothing is copied at load, and a page counts in the
process's RSS once it has been read. The encoders' inference form (``models.encoder``)
then reads every weight once to fold the BatchNorms and pack the convs for oneDNN: from
then on the folded copies are what runs, and the ~2 GB of file pages behind the original
parameters are dead weight in RSS (float32 peak: ~4.3 GB instead of ~2.4 GB).

:func:`release_mapped` asks the kernel to reclaim those pages (``madvise(MADV_PAGEOUT)``,
Linux >= 5.4). It is safe by construction: PAGEOUT only evicts what can be brought back,
so a clean file page is re-read from the file if a parameter is read again (the reference
forms, training, ``state_dict()``), and a page that was *written* (copy-on-write: a
parameter changed in place after loading) is anonymous memory, which without swap is
simply kept. Values never change; only where they live. ``MADV_DONTNEED`` would be
cheaper and is *not* used: on a private file mapping it would throw a written page away
and the parameter would silently revert to the file's value.

Only tensors whose bytes lie inside a file-backed mapping of this process are touched
(``/proc/self/maps``); anything else (anonymous memory, another OS, an old kernel, a
sandbox that forbids madvise) is a no-op that returns 0. :func:`trim_heap` returns freed
malloc arenas to the OS (glibc ``malloc_trim``), for after large temporary copies.

:func:`keep_freed_heap` is the other direction, for speed. glibc serves every allocation
above its mmap threshold (dynamic, at most 32 MiB) with a fresh ``mmap`` and unmaps it on
``free``, so each large activation tensor of each network call is new memory that the
kernel must fault in and zero, page by page, and take back when the tensor dies: about
470,000 page faults and 0.6-0.9 s of system time per 1024 px two-age call. With a 1 GiB mmap
threshold and a 512 MiB trim threshold the freed blocks stay in the heap and the next call
reuses them (measured in ``benchmarks/heap.py``: see docs/performance/cpu.md). It changes a
process-wide setting, so the library never calls it on import or load: the ``sam-age``
command calls it once at start (the application owns its allocator), Python users may call
it themselves, and a user's own ``MALLOC_*`` / ``GLIBC_TUNABLES`` malloc settings, or
another allocator (jemalloc, tcmalloc), are left alone. Peak RSS stays about where it was
(freed blocks are reused, not added to); :func:`trim_heap` still hands them back.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import functools
import os
import sys
from typing import TYPE_CHECKING, Iterable, List, Optional, Tuple

if TYPE_CHECKING:  # no torch at import: the command line calls keep_freed_heap before it loads
    import torch

MADV_PAGEOUT = 21
PAGE = 4096
# glibc's mallopt parameters (malloc.h) and the values keep_freed_heap sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
HEAP_TRIM_THRESHOLD = 512 << 20  # up to 512 MiB of free heap top is kept for the next call


@functools.lru_cache(maxsize=1)
def _libc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def file_mappings(maps: str = "/proc/self/maps") -> List[Tuple[int, int]]:
    """``(start, end)`` of every file-backed mapping of this process, sorted."""
    out = []
    try:
        with open(maps) as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or not parts[5].strip().startswith("/") or parts[4] == "0":
                    continue  # anonymous ([heap], [stack], no path) or no inode
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end))
    except OSError:
        return []
    return sorted(out)


def release_mapped(tensors: Iterable[torch.Tensor], ranges: Optional[List[Tuple[int, int]]] = None) -> int:
    """Ask the kernel to reclaim the file-backed pages under ``tensors`` (CPU tensors
    that alias a memory-mapped file); returns the bytes asked for (0 where nothing
    applies). See the module docstring for why this never changes a value."""
    libc = _libc()
    if libc is None:
        return 0
    ranges = file_mappings() if ranges is None else ranges
    if not ranges:
        return 0
    starts = [r[0] for r in ranges]
    done = 0
    seen = set()
    for t in tensors:
        if t is None or t.device.type != "cpu" or t.numel() == 0:
            continue
        storage = t.untyped_storage()
        lo, n = storage.data_ptr(), storage.nbytes()
        if lo in seen:
            continue
        seen.add(lo)
        i = bisect.bisect_right(starts, lo) - 1
        if i < 0 or not (ranges[i][0] <= lo and lo + n <= ranges[i][1]):
            continue
        a = (lo + PAGE - 1) // PAGE * PAGE  # whole pages inside the tensor only
        b = (lo + n) // PAGE * PAGE
        if b > a and libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), MADV_PAGEOUT) == 0:
            done += b - a
    return done


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc); False where there is no malloc_trim."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except OSError:
        return False


def is_glibc() -> bool:
    """True where the C library is glibc (asked of the C library itself: ``confstr``, no file
    read, unlike ``platform.libc_ver``, which scans the Python executable)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def _own_malloc_settings() -> bool:
    """True when the user chose the allocator's settings (glibc's environment variables or
    tunables) or preloaded another allocator: then they stay as they are."""
    env = os.environ
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return True
    return "glibc.malloc" in env.get("GLIBC_TUNABLES", "") or "malloc" in env.get("LD_PRELOAD", "")


def keep_freed_heap() -> bool:
    """Let glibc keep large freed blocks in the heap for reuse instead of unmapping them
    (see the module docstring: fewer page faults, faster CPU inference). Returns True when
    the settings were applied; False (nothing changed) off glibc, where the user set their
    own malloc settings or preloads another allocator, or where ``mallopt`` refuses."""
    libc = _libc()
    if libc is None or not is_glibc() or _own_malloc_settings():
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    try:
        ok = mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD) == 1
        return ok and mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD) == 1
    except (OSError, ctypes.ArgumentError):
        return False
