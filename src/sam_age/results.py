"""What aging a photo gives back: :class:`AgingResult` (per photo) and :class:`FaceResult`
(per face), and the lines and records that say what relative ages did.

No model here: :class:`~sam_age.pipeline.AgePipeline` fills these, the CLI, the dataset
runner, the web demo and the HTTP API read them. A result is plain data (PIL images, CPU
tensors, floats): it holds no reference to the pipeline that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from .ages import ResolvedAge, clamp_note, format_age
from .errors import UsageError
from .report import report_json, report_notes


@dataclass
class FaceResult:
    aligned: Image.Image  # the 256 px network input
    quad: Optional[np.ndarray]  # float32 [4, 2] crop corners in the photo (None with align=False)
    ages: List[float]
    images: List[Image.Image]  # one per age
    latents: torch.Tensor  # [A, n_styles, 512] W+ codes, on the CPU
    score: float = 0.0  # detector score (0 with align=False)
    size: int = 256  # the output size the images were made at
    landmarks: Optional[np.ndarray] = None  # [68, 2] in the photo (for the paste mask)
    estimated_age: Optional[float] = None  # DEX's estimate (when relative ages were asked)
    requested: Optional[list] = None  # the ages asked, per image: floats and RelativeAge
    resolved: List[ResolvedAge] = field(default_factory=list)
    report: Optional[list] = None  # with report=True: one sam_age.report.OutputReport per age

    @property
    def note(self) -> Optional[str]:
        """One line when some relative age was clamped to 0..100, else None."""
        return clamp_note(self.estimated_age, self.resolved) if self.estimated_age is not None else None


@dataclass
class AgingResult:
    source: Image.Image  # the photo as read (upright RGB)
    ages: List[float]  # the ages generated for the first face (relative ages resolved)
    faces: List[FaceResult]  # best detection first
    pasted: Optional[List[Image.Image]] = None  # whole photo per age asked (paste_back=True)
    requested: Optional[list] = None  # the ages asked: floats and RelativeAge ("+20")

    @property
    def estimated_age(self) -> Optional[float]:
        """The first face's estimated age (None when no relative age was asked)."""
        return self.faces[0].estimated_age

    @property
    def notes(self) -> List[str]:
        """Lines worth telling the user (clamped relative ages), per face."""
        return [
            f"face {i + 1}: {f.note}" if len(self.faces) > 1 else f.note for i, f in enumerate(self.faces) if f.note
        ]

    @property
    def images(self) -> List[Image.Image]:
        return self.faces[0].images

    @property
    def aligned(self) -> Image.Image:
        return self.faces[0].aligned

    @property
    def latents(self) -> torch.Tensor:
        return self.faces[0].latents


MASKS = ("face", "box")


def check_mask(mask: str) -> None:
    """UsageError unless ``mask`` is one of :data:`MASKS` (the paste-back masks)."""
    if mask not in MASKS:
        raise UsageError(f"mask must be one of {', '.join(MASKS)}, not {mask!r}")


# -- what relative ages did, for reports ------------------------------------------------------


def relative_report(result: AgingResult) -> dict:
    """Per input, for JSON summaries and the dataset manifest: the ages asked and made per
    face, with relative ages the estimate per face and what was clamped, and with
    ``report=True`` what each output reached (``report``: :func:`sam_age.report.report_json`)."""
    rec = {
        "requested": [format_age(a) for a in (result.requested or result.ages)],
        "ages": [[round(a, 6) for a in f.ages] for f in result.faces],
        **report_json(result.faces),
    }
    if any(f.estimated_age is not None for f in result.faces):
        rec["estimated_ages"] = [None if f.estimated_age is None else round(f.estimated_age, 2) for f in result.faces]
        rec["clamped"] = [
            {"face": i + 1, "request": str(r.request), "asked": r.asked, "age": r.age}
            for i, f in enumerate(result.faces)
            for r in f.resolved
            if r.clamped
        ]
    return rec


def relative_notes(result: AgingResult) -> List[str]:
    """Lines for stderr: the estimate(s) and what was clamped (one line per input), and
    one line per output that missed a ``--max-age-error`` / ``--min-identity`` check."""
    return _estimate_notes(result) + report_notes(result.faces)


def _estimate_notes(result: AgingResult) -> List[str]:
    if not any(f.estimated_age is not None for f in result.faces):
        return []
    ests = ", ".join(f"{f.estimated_age:.1f}" for f in result.faces)
    n = len(result.faces)
    line = f"estimated age {ests}" if n == 1 else f"estimated ages {ests} (faces 1..{n})"
    clamped = [
        f"face {i + 1}: " * (len(result.faces) > 1) + f"{r.request} -> {r.asked:g} clamped to {r.age:g}"
        for i, f in enumerate(result.faces)
        for r in f.resolved
        if r.clamped
    ]
    if clamped:
        line += "; " + "; ".join(clamped) + " (SAM ages within 0..100)"
    return [line]
