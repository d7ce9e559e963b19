"""Bytes <-> tensors, safely.

- ``.pt``/``.pth``: ``torch.load(weights_only=True)`` (memory-mapped where the file allows);
- ``.pdparams``: a restricted unpickler that admits only numpy array reconstruction,
  tuples, lists and OrderedDict, so no pickle can run code;
- ``.safetensors``: our own export (flat tensors + JSON metadata).
Every failure becomes a one-line :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import collections
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..errors import CheckpointError, UnsafeCheckpointError, brief
from ..fileio import atomic_write, write_bytes

PathLike = "str | os.PathLike[str]"

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("_codecs", "encode"),  # protocol-2 pickles store bytes through it
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            if module.startswith("numpy"):
                import importlib
                try:
                    return getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError):
                    # numpy 1.x has no numpy._core; numpy 2 keeps numpy.core as an alias
                    other = module.replace("numpy._core", "numpy.core") if "_core" in module \
                        else module.replace("numpy.core", "numpy._core")
                    return getattr(importlib.import_module(other), name)
            if module == "collections":
                return collections.OrderedDict
            if module == "_codecs":
                import _codecs
                return _codecs.encode
            return {"tuple": tuple, "list": list, "dict": dict}[name]
        raise UnsafeCheckpointError(f"refusing to load: the pickle asks for {module}.{name}")

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("refusing to load: the pickle uses persistent ids")


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
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(e.reason, path) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError, UnicodeDecodeError) as e:
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            AttributeError, TypeError, IndexError, MemoryError) as e:
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
