"""``weights convert``: a SAM checkpoint -> our ``.safetensors`` (or the official ``.pt``
layout), streamed: the source is memory-mapped, each tensor is written out on its own.

Why not ``save_sam(load_sam(src))``: ``safetensors.torch.save`` turns every tensor into
a ``bytes`` copy and then joins them into one more ``bytes`` object for the whole file, on
top of the mapped source: 7.1 GB peak RSS for the 2.27 GB checkpoint (measured, see
``benchmarks/results/convert-rss.md``). Here the names, shapes and the model
configuration are checked against a SAM built on the ``meta`` device (no memory), the
header is computed from shapes alone, and one tensor at a time is read from the mapping
and written to the output; the mapping's pages are handed back to the kernel once written
(Linux ``madvise``), so the peak stays near the largest tensor (0.34 GB measured).

Invariants:
- the output holds exactly what ``save_sam(load_sam(src))`` writes (same names, values,
  dtypes, opts and ``latent_avg``; a test holds the two to each other);
- the write is atomic (temp file + rename): a failure never leaves a half file at ``out``;
- Paddle ``.pdparams`` sources (a pickle, read whole by the restricted unpickler) go the
  model way: there is nothing to map.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import CheckpointError
from ..fileio import atomic_write
from ..models.sam import SAM
from .formats import save_torch, to_tensor
from .load import _infer_sam_config, _load_state, _read, _sam_latent_avg, _sam_state, load_sam, save_sam

# safetensors' dtype names
ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _release(t: torch.Tensor) -> None:
    """Hand the pages behind a memory-mapped ``t`` back to the kernel (they stay in the
    page cache and would be read again from the file if touched). Only for tensors whose
    storage lies in a read-only-used private file mapping, which is what ``torch.load(
    mmap=True)`` gives: MADV_DONTNEED on such pages drops nothing but our view of them."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or not hasattr(os, "sysconf"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        page = os.sysconf("SC_PAGE_SIZE")
        storage = t.untyped_storage()
        start = storage.data_ptr()
        end = start + storage.nbytes()
        first = (start + page - 1) // page * page  # whole pages inside the storage only
        last = end // page * page
        if last > first:
            libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), advice)
    except (OSError, AttributeError, ValueError):
        pass


def write_safetensors_streamed(
    specs: Mapping[str, Tuple[torch.dtype, Tuple[int, ...]]],
    produce: Callable[[str], torch.Tensor],
    path,
    metadata: Optional[Dict[str, str]] = None,
    after: Optional[Callable[[str], None]] = None,
) -> Path:
    """Write a ``.safetensors`` file whose header comes from ``specs`` (name -> dtype,
    shape) and whose data comes from ``produce(name)``, one tensor at a time, in name
    order. ``after(name)`` runs once a tensor's bytes are written (to release them)."""
    names = sorted(specs)
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    offset = 0
    for name in names:
        dtype, shape = specs[name]
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned, as the library writes it

    def write(f) -> None:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name in names:
            t = produce(name)
            dtype, shape = specs[name]
            if t.dtype != dtype or tuple(t.shape) != tuple(shape):
                raise CheckpointError(f"{name}: produced {t.dtype} {tuple(t.shape)}, header says {dtype} {shape}")
            t = t.contiguous()
            f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            if after is not None:
                after(name)

    return atomic_write(path, write)


def convert_sam(source, out, fmt: Optional[str] = None) -> Path:
    """Convert a SAM checkpoint (official ``.pt``, ``.pdparams``, our ``.safetensors``) to
    ``out`` (``fmt`` ``safetensors`` or ``pt``; default from ``out``'s suffix). Every
    check of :func:`load_sam` is made; the model itself is never built."""
    out = Path(out)
    fmt = fmt or ("pt" if out.suffix in (".pt", ".pth") else "safetensors")
    fmt_in, obj, path = _read(source)
    if fmt_in == "pdparams":  # a whole pickle in memory already: convert through the model
        del obj
        return save_sam(load_sam(path), out)
    state, opts, latent_avg = _sam_state(fmt_in, obj, path)
    del obj
    cfg = _infer_sam_config(state, opts, path)
    if latent_avg is None:
        raise CheckpointError("SAM checkpoint has no latent_avg", path)
    with torch.device("meta"):
        model = SAM(**cfg)
    state = {k: to_tensor(v, k) for k, v in state.items()}
    _load_state(model, state, path, "SAM")  # names and shapes (copies to meta: no work)
    own = {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
    latent = _sam_latent_avg(model, latent_avg, path).clone()
    opts_out = dict(model.opts)

    def tensor(name: str) -> torch.Tensor:
        if name == "latent_avg":
            return latent
        dtype, shape = own[name]
        v = state.get(name)
        if v is None:  # optional keys the file lacked (num_batches_tracked)
            return torch.zeros(shape, dtype=dtype)
        v = v.detach()
        return v.to(dtype) if v.is_floating_point() else v  # as save_sam: float32 floats

    def release(name: str) -> None:
        v = state.pop(name, None)
        if v is not None and fmt_in == "torch":
            _release(v)

    if fmt == "safetensors":
        specs = dict(own)
        specs["latent_avg"] = (torch.float32, tuple(latent.shape))
        return write_safetensors_streamed(
            specs, tensor, out, {"format": "sam-age", "kind": "sam", "opts": json.dumps(opts_out)}, after=release
        )
    # .pt: torch.save writes storage by storage straight from the mapping
    return save_torch({"state_dict": {k: tensor(k) for k in own}, "opts": opts_out, "latent_avg": latent}, out)


__all__: List[str] = ["convert_sam", "write_safetensors_streamed"]
