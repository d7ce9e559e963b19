"""sam-age: SAM age transformation (Alaluf et al., SIGGRAPH 2021) as a PyTorch package.

Heavy pieces are imported lazily so that ``import sam_age`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SAM": "sam_age.models.sam",
    "Generator": "sam_age.models.stylegan2",
    "GradualStyleEncoder": "sam_age.models.encoder",
    "load_sam": "sam_age.checkpoints.load",
    "save_sam": "sam_age.checkpoints.load",
    "load_stylegan2": "sam_age.checkpoints.load",
    "load_psp_encoder": "sam_age.checkpoints.load",
    "load_ir_se50": "sam_age.checkpoints.load",
    "load_curricular_face": "sam_age.checkpoints.load",
    "load_dex": "sam_age.checkpoints.load",
    "load_alexnet": "sam_age.checkpoints.load",
    "build_sam_for_training": "sam_age.checkpoints.load",
    "AgePipeline": "sam_age.pipeline",
    "AgingResult": "sam_age.results",
    "StyleMixer": "sam_age.mixing",
    "AgeEstimator": "sam_age.estimate",
    "RelativeAge": "sam_age.ages",
    "parse_ages": "sam_age.ages",
    "CheckpointError": "sam_age.errors",
    "SamAgeError": "sam_age.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sam_age' has no attribute {name!r}")
