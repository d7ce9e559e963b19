"""Training SAM with the official recipe: options, data, the trainer (``sam-age train``).

The trainer (torch and the loss networks) loads lazily: ``sam-age train --help`` and the
parser of every other command import only :mod:`.options`, which needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import RECIPE, add_train_arguments, build_parser, validate_options

_LAZY = {"Trainer": "sam_age.training.trainer", "run_training": "sam_age.training.trainer"}

__all__ = ["RECIPE", "Trainer", "add_train_arguments", "build_parser", "run_training", "validate_options"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sam_age.training' has no attribute {name!r}")
