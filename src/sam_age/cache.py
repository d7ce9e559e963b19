"""The small caches of the per-upload path (:class:`~sam_age.pipeline.AgePipeline`):
an :class:`LRU` bounded by entries and bytes, and content keys for what it holds.

A key says what a value was computed *from* (a photo's bytes or pixels, a tensor's bytes,
shape and dtype), never where it came from, so the same upload under another name hits
and a hit returns exactly what the miss computed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

PHOTO_CACHE_BYTES = 256 * 2**20  # decoded photos the per-upload cache may hold (a web server's memory)


class LRU:
    """A small least-recently-used map: at most ``maxsize`` entries (0 keeps nothing) and,
    with ``max_bytes``, at most that many bytes as told by ``put(..., nbytes=)`` (an entry
    larger than that alone is not kept)."""

    def __init__(self, maxsize: int, max_bytes: Optional[int] = None):
        self.maxsize = max(0, int(maxsize))
        self.max_bytes = max_bytes
        self._data: "OrderedDict" = OrderedDict()
        self._sizes: dict = {}

    def get(self, key):
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        return None

    def get_many(self, keys: Sequence, compute: Callable[[List[int]], Sequence]) -> list:
        """The values of ``keys``; the missing ones computed together by
        ``compute(indices)`` (one value per index, in order) and kept."""
        got = [self.get(k) for k in keys]
        todo = [i for i, g in enumerate(got) if g is None]
        if todo:
            for i, value in zip(todo, compute(todo)):
                got[i] = value
                self.put(keys[i], value)
        return got

    def put(self, key, value, nbytes: int = 0) -> None:
        if self.maxsize == 0 or (self.max_bytes is not None and nbytes > self.max_bytes):
            return
        self._data[key] = value
        self._sizes[key] = nbytes
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize or (
            self.max_bytes is not None and sum(self._sizes.values()) > self.max_bytes
        ):
            old, _ = self._data.popitem(last=False)
            self._sizes.pop(old, None)

    def clear(self) -> None:
        self._data.clear()
        self._sizes.clear()

    def __len__(self) -> int:
        return len(self._data)


def content_key(image) -> Optional[str]:
    """A digest of what ``image`` holds (file bytes, bytes, a PIL image's pixels or an
    array), or None for anything else (not cached). Reading a file twice costs far less
    than detecting its faces again."""
    h = hashlib.blake2b(digest_size=20)
    try:
        if isinstance(image, (str, Path)):
            with open(image, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(b"file")
        elif isinstance(image, (bytes, bytearray, memoryview)):
            h.update(bytes(image))
            h.update(b"bytes")
        elif isinstance(image, Image.Image):
            h.update(f"{image.mode}{image.size}".encode())
            h.update(image.tobytes())
        elif isinstance(image, np.ndarray):
            h.update(f"{image.dtype}{image.shape}".encode())
            h.update(np.ascontiguousarray(image).tobytes())
        else:
            return None
    except OSError:  # unreadable: let the reader say why, uncached
        return None
    return h.hexdigest()


def tensor_key(t: torch.Tensor) -> str:
    """A digest of a tensor's bytes, shape and dtype (any dtype, any device)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes()  # the bytes, whatever the dtype (bf16 has no numpy type)
    return hashlib.blake2b(raw, digest_size=20).hexdigest() + f"{tuple(t.shape)}{t.dtype}"
