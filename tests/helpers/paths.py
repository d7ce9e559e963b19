"""Where the reference data is: ``../shared/reference`` beside the repository, or
``$SAM_AGE_SHARED``."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SAM_AGE_SHARED", REPO.parent / "shared")).resolve()
REFERENCE = SHARED / "reference"
CASES = REFERENCE / "cases"
