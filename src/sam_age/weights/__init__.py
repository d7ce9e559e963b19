"""The official pretrained files: registry (facts and sources), download (resumable HTTP,
Drive's confirm page, the checks a fetched file must pass), hub (the Hugging Face Hub
through huggingface_hub), store (the cache, the fallback between sources, and the one
resolver of every weights flag: :func:`resolve_weights`).

Floors: ``registry``, ``download`` and ``hub`` are floor 2 (no torch); ``store`` is floor 3
beside ``checkpoints`` (its load check opens files with their loaders). The names below
load lazily, so importing ``sam_age.weights.registry`` from floor 2 never imports the store,
and nothing imports huggingface_hub until a Hub source is tried.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "REGISTRY": "registry",
    "Source": "registry",
    "WeightsFile": "registry",
    "get": "registry",
    "lookup": "registry",
    "names": "registry",
    "package_file": "registry",
    "cache_dir": "store",
    "cached_file": "store",
    "check_cached": "store",
    "fetch": "store",
    "import_file": "store",
    "manual_steps": "store",
    "resolve_weights": "store",
    "sources_for": "store",
    "verify": "store",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
