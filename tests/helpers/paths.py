"""Where the reference data is: ``../shared/reference`` beside the repository, or
``$SAM_AGE_SHARED``; and where ``torchrun`` is."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SAM_AGE_SHARED", REPO.parent / "shared")).resolve()
REFERENCE = SHARED / "reference"
CASES = REFERENCE / "cases"


def torchrun() -> Optional[str]:
    """The ``torchrun`` beside this Python (the venv's), else the one on PATH; None if neither."""
    exe = Path(sys.executable).parent / "torchrun"
    return str(exe) if exe.exists() else shutil.which("torchrun")
