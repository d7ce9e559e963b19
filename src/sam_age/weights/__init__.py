"""The official pretrained files: registry (facts), store (cache + flag resolution),
download (resumable fetch). Light to import: no torch until a file is loaded."""
from .registry import REGISTRY, WeightsFile, get, lookup, names
from .store import (cache_dir, cached_file, fetch, import_file, manual_steps, resolve_checkpoint,
                    resolve_weights, verify)

__all__ = ["REGISTRY", "WeightsFile", "cache_dir", "cached_file", "fetch", "get", "import_file",
           "lookup", "manual_steps", "names", "resolve_checkpoint", "resolve_weights", "verify"]
