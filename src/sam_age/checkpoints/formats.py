"""Bytes <-> tensors, safely.

- ``.pt``/``.pth``: ``torch.load(weights_only=True)`` (memory-mapped where the file allows);
- ``.pdparams``: a restricted unpickler that admits only numpy array reconstruction,
  tuples, lists and OrderedDict, so no pickle can run code, each through a checked
  stand-in, with allocations bounded by the file's size (see below);
- ``.safetensors``: our own export (flat tensors + JSON metadata).
Every failure becomes a one-line :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import collections
import json
import pickle
import zipfile
from pathlib import Path
from struct import error as struct_error
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..errors import CheckpointError, UnsafeCheckpointError, brief
from ..fileio import atomic_write, write_bytes

PathLike = "str | os.PathLike[str]"

# ---------------------------------------------------------------------------------------
# The restricted unpickler for .pdparams.
#
# Invariants (a hostile file is refused in well under a second, whatever it says):
# - no global is ever handed to the pickle as itself: each allowed name maps to a checked
#   stand-in below, so nothing can call numpy.ndarray(shape) or _codecs.encode(x, 'hex');
# - before unpickling, a scan of the opcodes (the file is memory-mapped, data is skipped,
#   never read) checks that every counted length fits in the bytes left and that the number
#   of opcodes is bounded, so the C unpickler never pre-allocates a length the file lies about
#   and the objects it makes are bounded by the file's size;
# - an array is made only from a BUILD state whose data has exactly shape x itemsize bytes
#   of a plain numeric dtype; numpy's _reconstruct itself never runs (it allocates the shape
#   it is given, uninitialised);
# - every allocation the stand-ins make (latin-1 bytes, arrays, container copies) is charged
#   to a budget of a small multiple of the file's size.
# ---------------------------------------------------------------------------------------

_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1"}
_BUDGET_FACTOR = 4  # allocations allowed per byte of file
_BUDGET_FLOOR = 1 << 20  # ... and at least this many bytes
_MAX_OPCODES_FLOOR = 1 << 16  # opcodes allowed: this many, or one per 16 bytes of file
_MAX_NDIM = 32
_MAX_DEPTH = 64


class _Budget:
    def __init__(self, limit: int):
        self.limit = int(limit)
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used += int(nbytes)
        if self.used > self.limit:
            raise UnsafeCheckpointError(
                f"refusing to load: the pickle asks for more memory ({what}) than a file of its "
                f"size can hold (over {self.limit // (1 << 20)} MiB)"
            )


class _NdarrayType:
    """Stands for ``numpy.ndarray`` (only as _reconstruct's first argument)."""

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


class _DtypeStub:
    """``numpy.dtype(name, align, copy)`` + BUILD, checked: a plain numeric dtype only."""

    def __init__(self, name, align=False, copy=False):
        if (
            not isinstance(name, str)
            or len(name) > 4
            or name[:1] not in ("b", "i", "u", "f", "c")
            or not name[1:].isdigit()
        ):
            raise UnsafeCheckpointError(f"refusing to load: the pickle asks for dtype {name!r:.40}")
        try:
            self.dtype = np.dtype(name)
        except TypeError:
            raise UnsafeCheckpointError(f"refusing to load: the pickle asks for dtype {name!r:.40}") from None

    def __setstate__(self, state):
        if (
            not isinstance(state, tuple)
            or len(state) not in (8, 9)
            or state[1] not in ("<", ">", "|", "=")
            or any(x is not None for x in state[2:5])
        ):
            raise UnsafeCheckpointError("refusing to load: a dtype with fields, subarrays or an odd state")
        if state[1] in ("<", ">") and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _real_dtype(d) -> np.dtype:
    if isinstance(d, _DtypeStub):
        return d.dtype
    raise UnsafeCheckpointError("refusing to load: an array without a plain numeric dtype")


class _ArrayStub:
    """What ``_reconstruct(ndarray, shape, dtype)`` returns here: nothing is allocated until
    BUILD gives the real shape, dtype and data, and they agree."""

    __slots__ = ("budget", "array")

    def __init__(self, budget: _Budget):
        self.budget = budget
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafeCheckpointError("refusing to load: an array with an odd state")
        _version, shape, dtype, fortran, data = state
        dtype = _real_dtype(dtype)
        if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or not all(type(n) is int and 0 <= n for n in shape):
            raise UnsafeCheckpointError("refusing to load: an array with an odd shape")
        if not isinstance(fortran, (bool, int)):
            raise UnsafeCheckpointError("refusing to load: an array with an odd state")
        if not isinstance(data, (bytes, bytearray)):
            raise UnsafeCheckpointError("refusing to load: an array whose data is not bytes")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != len(data):
            raise UnsafeCheckpointError(
                f"refusing to load: an array of shape {tuple(shape)!s:.60} {dtype} needs "
                f"{count * dtype.itemsize} bytes but the file gives {len(data)}"
            )
        self.budget.charge(len(data), "array")
        arr = np.empty(0, dtype=np.uint8)
        arr.__setstate__((1, shape, dtype, bool(fortran), data))
        self.array = arr


def _empty_bytes(*args):
    if args:
        raise UnsafeCheckpointError("refusing to load: bytes() with arguments")
    return b""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, budget: _Budget):
        super().__init__(file)
        self.budget = budget

    # -- the checked stand-ins of the allowed globals -------------------------------------
    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not _NDARRAY or not isinstance(shape, tuple) or not isinstance(dtype, (bytes, str)):
            raise UnsafeCheckpointError("refusing to load: numpy _reconstruct with odd arguments")
        return _ArrayStub(self.budget)

    def _scalar(self, dtype, data=None):
        dtype = _real_dtype(dtype)
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise UnsafeCheckpointError("refusing to load: a numpy scalar with odd data")
        return np.frombuffer(data, dtype=dtype)[0].copy()

    def _encode(self, obj, encoding="utf-8", errors="strict"):
        # Protocol 2 writes bytes as _codecs.encode(<str of code points < 256>, 'latin1'):
        # that, and nothing else, is allowed.
        if (
            not isinstance(obj, str)
            or not isinstance(encoding, str)
            or encoding.lower() not in _LATIN1
            or errors != "strict"
        ):
            raise UnsafeCheckpointError("refusing to load: _codecs.encode is allowed only as latin-1 bytes")
        self.budget.charge(len(obj), "bytes")
        return obj.encode("latin-1")

    def _container(self, kind):
        budget = self.budget

        def make(*args):
            if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
                raise UnsafeCheckpointError(
                    f"refusing to load: {kind.__name__}() of something other than a list, tuple or dict"
                )
            if args:
                budget.charge(16 * len(args[0]) + 64, kind.__name__)
            return kind(*args)

        return make

    def find_class(self, module: str, name: str):
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return self._reconstruct
        if module in _NUMPY_MODULES and name == "scalar":
            return self._scalar
        if module == "numpy" and name == "ndarray":
            return _NDARRAY
        if module == "numpy" and name == "dtype":
            return _DtypeStub
        if module == "_codecs" and name == "encode":
            return self._encode
        if module == "collections" and name == "OrderedDict":
            return self._container(collections.OrderedDict)
        if module in ("builtins", "__builtin__") and name == "bytes":
            return _empty_bytes  # protocol 2 writes b'' as bytes()
        if module in ("builtins", "__builtin__") and name in ("tuple", "list", "dict"):
            return self._container({"tuple": tuple, "list": list, "dict": dict}[name])
        raise UnsafeCheckpointError(f"refusing to load: the pickle asks for {module:.60}.{name:.60}")

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("refusing to load: the pickle uses persistent ids")


def _scan_opcodes(path: Path, size: int) -> None:
    """Walk the pickle's opcodes without reading its data: every counted length must fit in
    the bytes that remain, and the opcodes are bounded in number."""
    import mmap
    import pickletools
    from pickletools import (
        TAKEN_FROM_ARGUMENT1,
        TAKEN_FROM_ARGUMENT4,
        TAKEN_FROM_ARGUMENT4U,
        TAKEN_FROM_ARGUMENT8U,
        UP_TO_NEWLINE,
    )

    ops = pickletools.code2op
    max_ops = max(_MAX_OPCODES_FLOOR, size // 16)
    counted = {
        TAKEN_FROM_ARGUMENT1: (1, "<B"),
        TAKEN_FROM_ARGUMENT4: (4, "<i"),
        TAKEN_FROM_ARGUMENT4U: (4, "<I"),
        TAKEN_FROM_ARGUMENT8U: (8, "<Q"),
    }
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        pos, n = 0, 0
        while True:
            if pos >= size:
                raise pickle.UnpicklingError("pickle data was truncated (no STOP)")
            op = ops.get(chr(m[pos]))
            if op is None:
                raise pickle.UnpicklingError(f"invalid opcode {m[pos]:#04x} at byte {pos}")
            n += 1
            if n > max_ops:
                raise UnsafeCheckpointError(
                    f"refusing to load: more than {max_ops} pickle opcodes in a file of {size} bytes"
                )
            if op.name in ("PERSID", "BINPERSID"):
                raise UnsafeCheckpointError("refusing to load: the pickle uses persistent ids")
            pos += 1
            arg = op.arg
            if op.name == "STOP":
                return
            if arg is None:
                continue
            if arg.n >= 0:
                pos += arg.n
            elif arg.n == UP_TO_NEWLINE:
                for _ in range(2 if op.name in ("GLOBAL", "INST") else 1):
                    end = m.find(b"\n", pos, min(size, pos + 4096))
                    if end < 0:
                        raise pickle.UnpicklingError(f"{op.name} line too long or truncated at byte {pos}")
                    pos = end + 1
            elif arg.n in counted:
                width, fmt = counted[arg.n]
                if pos + width > size:
                    raise pickle.UnpicklingError("pickle data was truncated")
                length = struct.unpack(fmt, m[pos : pos + width])[0]
                pos += width
                if length < 0 or length > size - pos:
                    raise pickle.UnpicklingError(
                        f"{op.name} says {length} bytes but only {size - pos} remain (truncated or forged)"
                    )
                pos += length
            else:  # pragma: no cover - every opcode of protocols 0-5 is handled above
                raise pickle.UnpicklingError(f"unsupported opcode {op.name}")


def _unstub(obj, depth: int = 0, seen=None):
    """The loaded tree with arrays in place of their stand-ins; plain containers and scalars
    only (no cycles, bounded depth)."""
    if seen is None:
        seen = set()
    if depth > _MAX_DEPTH:
        raise UnsafeCheckpointError("refusing to load: the pickle nests too deep")
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise UnsafeCheckpointError("refusing to load: an array without data")
        return obj.array
    if obj is None or isinstance(obj, (str, bytes, bool, int, float, np.ndarray, np.generic)):
        return obj
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in seen:
            raise UnsafeCheckpointError("refusing to load: the pickle holds a cycle")
        seen.add(id(obj))
        try:
            if isinstance(obj, dict):
                out = type(obj)() if type(obj) in (dict, collections.OrderedDict) else dict()
                for k, v in obj.items():
                    out[_unstub(k, depth + 1, seen)] = _unstub(v, depth + 1, seen)
                return out
            items = [_unstub(v, depth + 1, seen) for v in obj]
            return tuple(items) if isinstance(obj, tuple) else items
        finally:
            seen.discard(id(obj))
    raise UnsafeCheckpointError(f"refusing to load: the pickle holds a {type(obj).__name__!s:.40}")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise CheckpointError("file not found", path)
    if path.is_dir():
        raise CheckpointError("is a directory, expected a weights file", path)
    if path.stat().st_size == 0:
        raise CheckpointError("file is empty", path)


def sniff_format(path: Path) -> str:
    """'torch-zip', 'torch-legacy' (or another pickle), 'safetensors' or 'unknown'."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def read_pickle_restricted(path: Path) -> Any:
    _check_exists(path)
    size = path.stat().st_size
    try:
        _scan_opcodes(path, size)
        budget = _Budget(max(_BUDGET_FLOOR, _BUDGET_FACTOR * size))
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, budget).load()
        return _unstub(obj)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(e.reason, path) from None
    except RecursionError:
        raise UnsafeCheckpointError("refusing to load: the pickle nests too deep", path) from None
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
        struct_error,
    ) as e:
        raise CheckpointError(f"truncated or corrupt pickle ({type(e).__name__}: {e})", path) from None


def read_torch(path: Path, mmap: bool = True) -> Any:
    """``torch.load(weights_only=True)``; memory-mapped when the file is a zip archive."""
    _check_exists(path)
    kind = sniff_format(path)
    if kind == "unknown":
        raise CheckpointError("not a PyTorch checkpoint (unrecognised file header)", path)
    if kind == "safetensors":
        return read_safetensors(path)
    try:
        if kind == "torch-zip" and mmap:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Unsupported global" in msg or "Unsupported operand" in msg or "weights_only" in msg.lower():
            detail = ""
            for line in msg.splitlines():
                if "Unsupported" in line:
                    detail = ": " + brief(line).rstrip(".")
                    break
            if kind == "pickle" and not detail:
                detail = ""
            raise UnsafeCheckpointError(f"refusing to load a pickle that is not plain weights{detail}", path) from None
        raise CheckpointError(f"truncated or corrupt checkpoint ({brief(msg)})", path) from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        KeyError,
        AttributeError,
        TypeError,
        IndexError,
        MemoryError,
    ) as e:
        first = brief(str(e)) or type(e).__name__
        raise CheckpointError(f"truncated or corrupt checkpoint ({first})", path) from None


def read_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Returns ``(tensors, metadata)``."""
    _check_exists(path)
    try:
        from safetensors import safe_open

        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        return tensors, meta
    except Exception as e:  # safetensors raises its own SafetensorError and others
        first = brief(str(e)) or type(e).__name__
        raise CheckpointError(f"truncated or corrupt safetensors file ({first})", path) from None


def read_any(path) -> Tuple[str, Any]:
    """Read a weights file of any supported kind: ``(format, object)``."""
    path = Path(path)
    _check_exists(path)
    if path.suffix == ".pdparams":
        return "pdparams", read_pickle_restricted(path)
    kind = sniff_format(path)
    if kind == "safetensors" or path.suffix == ".safetensors":
        return "safetensors", read_safetensors(path)
    obj = read_torch(path)
    return "torch", obj


def save_torch(obj: Any, path) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_safetensors(tensors: Dict[str, torch.Tensor], path, metadata: Optional[Dict[str, Any]] = None) -> Path:
    from safetensors.torch import save as st_save

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = st_save(flat, metadata=meta)
    return write_bytes(path, data)


def to_tensor(value: Any, key: str = "") -> torch.Tensor:
    """Tensor from a torch tensor, a numpy array, or Paddle's ``(name, ndarray)`` tuple."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (np.generic, int, float)):
        return torch.tensor(np.asarray(value))
    raise TypeError(f"{key}: expected a tensor, got {type(value).__name__}")
