"""What each output reached (``--report``): the age it looks, and how much of the person it kept.

Per output image (one face at one asked age):

* ``achieved_age``: DEX's estimate on the output, as ``sam-age estimate`` computes it
  (:class:`~sam_age.estimate.AgeEstimator.estimate_aligned`: the 256 px face, bilinear to
  224, expected value over 101 bins). DEX is the network SAM was trained against (its aging
  loss), so this is how far the model got by its own teacher's measure, **not an
  independent judge** of age: a SAM output can fool DEX better than it fools people.
* ``identity``: cosine similarity of face embeddings, input face vs output
  (:class:`~sam_age.identity.IdentityNet`): CurricularFace IR-101 (the paper's evaluation
  network, not used in training) when its weights resolve, else IR-SE-50 (training's ID
  loss network, so again not independent); ``identity_model`` names which.
* ``check``: with ``max_age_error`` and/or ``min_identity``, ``"ok"`` or ``"failed"``
  (``misses`` says which); a miss is reported, never an error: the run still exits 0.
* ``caption``: ``"looks 68 for 70 asked; identity 0.62"``.

The measures run on the aligned 256 px faces the model made (``--size 1024`` outputs are
resized to 256 first), never on the pasted photo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from .images import to_tensor

CHECK_OK, CHECK_FAILED = "ok", "failed"


@dataclass
class OutputReport:
    age: float  # the age asked (relative ages resolved)
    achieved_age: float  # DEX on the output, years
    identity: float  # cosine similarity with the input face
    identity_model: str  # "curricularface" / "ir_se50"
    crop: str = "five-point"  # the identity crop used (see sam_age.identity)
    check: Optional[str] = None  # None (no thresholds), "ok" or "failed"
    misses: List[str] = field(default_factory=list)

    @property
    def age_error(self) -> float:
        return self.achieved_age - self.age

    @property
    def caption(self) -> str:
        return f"looks {self.achieved_age:.0f} for {self.age:g} asked; identity {self.identity:.2f}"

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(
            achieved_age=round(self.achieved_age, 2),
            identity=round(self.identity, 4),
            age_error=round(self.age_error, 2),
            caption=self.caption,
        )
        if self.check is None:
            d.pop("check")
            d.pop("misses")
        return d


def check_output(rep: OutputReport, max_age_error: Optional[float], min_identity: Optional[float]) -> OutputReport:
    if max_age_error is None and min_identity is None:
        return rep
    misses = []
    if max_age_error is not None and abs(rep.age_error) > max_age_error:
        misses.append(
            f"looks {rep.achieved_age:.1f}, {abs(rep.age_error):.1f} years from {rep.age:g} "
            f"(more than --max-age-error {max_age_error:g})"
        )
    if min_identity is not None and rep.identity < min_identity:
        misses.append(f"identity {rep.identity:.3f} below --min-identity {min_identity:g}")
    rep.misses = misses
    rep.check = CHECK_FAILED if misses else CHECK_OK
    return rep


def _batch(images) -> torch.Tensor:
    from .identity import as_batch

    return as_batch(images)


def measure_face(
    aligned,
    images: Sequence,
    ages: Sequence[float],
    estimator,
    identity_net,
    max_age_error: Optional[float] = None,
    min_identity: Optional[float] = None,
) -> List[OutputReport]:
    """The reports of one face's outputs: ``aligned`` (the 256 px input face, PIL) and
    ``images`` (PIL, one per age in ``ages``)."""
    outputs = _batch(images)
    achieved = estimator.estimate_aligned(outputs)
    sim = identity_net.similarities(to_tensor(aligned.convert("RGB")), outputs)
    return [
        check_output(OutputReport(float(a), float(got), float(s), sim.model, sim.crop), max_age_error, min_identity)
        for a, got, s in zip(ages, achieved, sim.values)
    ]


def report_json(faces) -> Optional[Dict[str, object]]:
    """For the manifest and ``--json``: ``{"report": [[output, ...] per face]}`` (empty when
    no face carries a report)."""
    if not faces or all(getattr(f, "report", None) is None for f in faces):
        return {}
    return {"report": [[r.to_json() for r in (f.report or [])] for f in faces]}


def report_notes(faces) -> List[str]:
    """One line per output that missed a threshold."""
    lines = []
    for i, f in enumerate(faces):
        for r in f.report or []:
            if r.check == CHECK_FAILED:
                face = f"face {i + 1}, " if len(faces) > 1 else ""
                lines.append(f"check failed: {face}age {r.age:g}: " + "; ".join(r.misses))
    return lines
