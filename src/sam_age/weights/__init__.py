"""The official pretrained files: registry (facts), download (resumable fetch), store
(the cache, and the one resolver of every weights flag: :func:`resolve_weights`).

Floors: ``registry`` and ``download`` are floor 2 (no torch); ``store`` is floor 3 beside
``checkpoints`` (its load check opens files with their loaders). The names below load
lazily, so importing ``sam_age.weights.registry`` from floor 2 never imports the store.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "REGISTRY": "registry", "WeightsFile": "registry", "get": "registry", "lookup": "registry",
    "names": "registry", "package_file": "registry",
    "cache_dir": "store", "cached_file": "store", "fetch": "store", "import_file": "store",
    "manual_steps": "store", "resolve_checkpoint": "store", "resolve_weights": "store", "verify": "store",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
